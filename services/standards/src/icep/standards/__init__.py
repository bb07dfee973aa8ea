"""ICEP standards service.

NATO standards, national ratification and implementation, conformance and interchangeability.
"""
