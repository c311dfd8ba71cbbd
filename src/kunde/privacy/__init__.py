"""Privacy: the vault (per-subject keys, crypto-shredding), and later consent, export, erasure."""
