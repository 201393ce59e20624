"""The Nix system driver: observe, build and compare NixOS systems with real Nix.

A shell over Nix, one module per job: `observe` (profile generations, current
and booted system), `build` (a host's toplevel from the mirror at one commit,
held by a GC root), `realise` (a prebuilt system fetched from the machine's
binary caches, signatures required), `facts` (closure diff, reboot needed,
switch inhibitors) and `publish` (the Nix half of `pullnix publish`: build,
sign and copy in CI), over `process` (running one Nix command with its log
streamed, on `reconciler.common.child`'s runner) and `errors` (typed failures
with condition reasons). The decisions it needs are pure functions in
`reconciler.core.activation`. Deleting old generations is the helper's job
(`reconciler.helper.retention`): root owns the system profile.
Must not: import the source layer, talk to the helper, or activate a system
(the helper does that).
"""
