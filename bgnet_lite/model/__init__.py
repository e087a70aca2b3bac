"""BGNet, one paper concept per module (chapters 2-6)."""
