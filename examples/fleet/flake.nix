{
  description = "A fleet of NixOS machines deployed by pullnix (see pullnix.yaml)";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.05";

  outputs = { self, nixpkgs }:
    let
      # Every host is hosts/<name>/configuration.nix plus the fleet's common module.
      host = name: nixpkgs.lib.nixosSystem {
        system = "x86_64-linux";
        modules = [
          ./modules/common.nix
          ./hosts/${name}/configuration.nix
          { networking.hostName = name; }
        ];
      };
    in
    {
      # pullnix.yaml builds nixosConfigurations.{host}.config.system.build.toplevel.
      nixosConfigurations = nixpkgs.lib.genAttrs [ "edge-01" "server-01" ] host;
    };
}
