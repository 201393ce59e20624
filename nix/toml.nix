# A small TOML serializer in pure Nix (builtins only, no nixpkgs), so the
# machine config can be rendered and tested on a machine without nixpkgs.
#
# Owns: turning a Nix attrset into TOML text in a fixed, readable order.
# Must not: know anything about pullnix's keys (that is render-config.nix).
#
#   render { order = { "" = [ "host" ]; source = [ "urls" ]; }; } value
#
# `order` maps a table path (its dotted name; "" for the root) to the keys to
# write first, in that order; the rest follow sorted by name. Within a table,
# plain keys come before sub-tables, as TOML requires. Values: strings, paths
# and derivations (written as their store path, so the file depends on them),
# booleans, integers, floats, lists of those, and attrsets (tables; inline
# tables inside lists). `null` has no TOML spelling and is an error naming
# the key.
let
  inherit (builtins)
    attrNames
    concatStringsSep
    elem
    filter
    fromJSON
    isAttrs
    isBool
    isFloat
    isFunction
    isInt
    isList
    isPath
    isString
    length
    map
    match
    replaceStrings
    stringLength
    substring
    toJSON
    ;

  hex = [ "0" "1" "2" "3" "4" "5" "6" "7" "8" "9" "A" "B" "C" "D" "E" "F" ];
  hexDigit = n: builtins.elemAt hex n;
  u4 = n: "\\u00" + hexDigit (n / 16) + hexDigit (n - 16 * (n / 16));

  # Every control character TOML forbids raw in a basic string, with its
  # escape (the short form where TOML has one). Nix source cannot spell most
  # of them ("\b" in Nix is just "b"), so the characters come from JSON.
  # U+0000 cannot occur: Nix strings cannot hold it.
  short = { "8" = "\\b"; "9" = "\\t"; "10" = "\\n"; "12" = "\\f"; "13" = "\\r"; };
  controlCodes = builtins.genList (n: n + 1) 31 ++ [ 127 ];
  controlChars = map (n: fromJSON "\"${u4 n}\"") controlCodes;
  controlEscapes = map (n: short.${toString n} or (u4 n)) controlCodes;

  escape = s:
    replaceStrings ([ "\\" "\"" ] ++ controlChars) ([ "\\\\" "\\\"" ] ++ controlEscapes) s;

  quote = s: "\"" + escape s + "\"";

  bareKey = k: match "[A-Za-z0-9_-]+" k != null;
  key = k: if bareKey k then k else quote k;

  isPathLike = v: isPath v || (isAttrs v && v ? outPath);
  isTable = v: isAttrs v && !(v ? outPath);

  where = path: if path == [ ] then "the top level" else concatStringsSep "." path;

  float = f:
    let s = toJSON f;
    in if match ".*[.eE].*" s != null then s else s + ".0";

  value = path: v:
    if isString v then quote v
    else if isPathLike v then quote "${v}"
    else if isBool v then (if v then "true" else "false")
    else if isInt v then toString v
    else if isFloat v then float v
    else if isList v then
      "[" + concatStringsSep ", " (map (value path) v) + "]"
    else if isTable v then
      "{ " + concatStringsSep ", " (map (k: "${key k} = ${value (path ++ [ k ]) v.${k}}") (attrNames v)) + " }"
    else if v == null then
      throw "toml.nix: ${where path} is null, which TOML cannot express; leave the key out or use \"\""
    else if isFunction v then
      throw "toml.nix: ${where path} is a function, which TOML cannot express"
    else
      throw "toml.nix: ${where path} has a value TOML cannot express";

  orderedKeys = order: path: attrs:
    let
      first = filter (k: attrs ? ${k}) (order.${concatStringsSep "." path} or [ ]);
      rest = filter (k: !(elem k first)) (attrNames attrs);
    in
    first ++ rest;

  # The lines of one table (without its header), then its sub-tables.
  table = order: path: attrs:
    let
      keys = orderedKeys order path attrs;
      plain = filter (k: !(isTable attrs.${k})) keys;
      tables = filter (k: isTable attrs.${k}) keys;
      lines = map (k: "${key k} = ${value (path ++ [ k ]) attrs.${k}}\n") plain;
      sub = k:
        let p = path ++ [ k ];
        in "\n[" + concatStringsSep "." (map key p) + "]\n" + table order p attrs.${k};
    in
    concatStringsSep "" lines + concatStringsSep "" (map sub tables);

  stripLeadingNewline = s:
    if substring 0 1 s == "\n" then substring 1 (stringLength s - 1) s else s;
in
{
  inherit escape quote;

  render = { order ? { } }: attrs:
    assert isTable attrs || throw "toml.nix: the top level must be an attrset";
    stripLeadingNewline (table order [ ] attrs);
}
