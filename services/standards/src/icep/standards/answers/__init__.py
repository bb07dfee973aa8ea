"""National answers to standard editions: ratification, reservations, implementation."""
