"""`pullnix demo`: the whole story in a sandbox, on a fake NixOS system built by real Nix.

`fakenixos` is the fake system (also what the test suite builds); `story` runs
the demo; `progress` shows it on a terminal or as plain lines.
"""
