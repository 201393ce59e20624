{
  description = "pullnix: a pull-based GitOps reconciler for NixOS, modelled on Kubernetes controllers";

  # There is no flake.lock in the repository: it was written on a machine with
  # no network, where none can be generated. Your first `nix flake lock` (or
  # any `nix build`) pins nixpkgs; in a fleet repository, make pullnix follow
  # your own nixpkgs (README.md, "Deploy on NixOS").
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});
    in
    {
      overlays.default = final: _prev: {
        pullnix = final.callPackage ./nix/package.nix { };
        pullnix-helper = final.pullnix.helper;
      };

      packages = forAllSystems (_system: pkgs:
        let pullnix = pkgs.callPackage ./nix/package.nix { };
        in {
          default = pullnix;
          inherit pullnix;
          helper = pullnix.helper;
        });

      # The module's default package is built from this same source with the
      # importing system's nixpkgs, so it needs no overlay. A path, not its
      # import: the module system keys a module by its file, so importing it
      # twice (directly and through another flake) declares the options once.
      nixosModules.default = ./nix/module.nix;
      nixosModules.pullnix = self.nixosModules.default;

      devShells = forAllSystems (system: pkgs: {
        default = pkgs.mkShell {
          # The application's build and runtime dependencies, plus the tools
          # the test suite drives for real (git, ssh, gpg, Nix).
          inputsFrom = [ self.packages.${system}.default ];
          packages = [
            (pkgs.python3.withPackages (ps: with ps; [ pytest mypy opentelemetry-proto ]))
            pkgs.ruff
            pkgs.git
            pkgs.openssh
            pkgs.gnupg
            pkgs.nix
          ];
        };
      });

      checks = forAllSystems (system: pkgs: {
        package = self.packages.${system}.default;
        helper = self.packages.${system}.helper;
        # Two NixOS VMs: a git server and a machine that follows it. A good
        # commit converges; a broken one is rolled back. Needs KVM.
        vm = import ./nix/tests/vm.nix { inherit pkgs self; };
      });
    };
}
