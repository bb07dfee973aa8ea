"""National Plans: Allies share plans for defence-industrial capacity; NATO reviews them."""
