"""The system tier: real systemd in systemd-nspawn containers on a cached Debian root."""
