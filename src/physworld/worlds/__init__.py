"""Ground-truth physical worlds."""
