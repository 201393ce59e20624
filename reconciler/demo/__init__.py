"""`pullnix demo`: the whole story in a sandbox, on a fake NixOS system built by real Nix.

`fakenixos` is the fake system (also what the test suite builds); `fleet` its
git repository; `preflight` says why a machine is not ready (no Nix, no store
yet, not root); `story` tells the demo act by act on a `stage` (the processes)
while `watch` follows the agent and the helper; `prebuilt_act` is its fourth
act, a system "CI" published into a signed cache; `progress` shows it on a
terminal or as plain lines.
"""
