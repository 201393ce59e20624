"""`pullnix demo`: the whole story in a sandbox, on a fake NixOS system built by real Nix.

`fakenixos` is the fake system (also what the test suite builds); `fleet` its
git repository; `story` tells the demo act by act on a `stage` (the processes)
while `watch` follows the agent and the helper; `progress` shows it on a
terminal or as plain lines.
"""
