"""Local copies of other services' facts (national capacity, standards, conformance), fed by their events."""
