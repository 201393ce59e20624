# system.configurationRevision -> the lines the toplevel's builder runs to
# record it as `$out/configuration-revision` (pure: builtins only, no nixpkgs,
# so the tests evaluate it and run its output here).
#
# NixOS keeps configurationRevision only inside the nixos-version script; the
# agent's downgrade check (reconciler/source/downgrade.py) reads this file
# from the running system when the helper has no record of its commit (a
# system installed by hand, or a helper state dir lost).
#
# Owns: quoting the revision for the builder's shell.
# Must not: write anything when the revision is unset.
revision:
let
  # A single-quoted shell word: every ' becomes '\'' .
  quote = s: "'" + builtins.replaceStrings [ "'" ] [ "'\\''" ] s + "'";
in
if revision == null then "" else ''
  printf '%s\n' ${quote revision} > "$out/configuration-revision"
''
