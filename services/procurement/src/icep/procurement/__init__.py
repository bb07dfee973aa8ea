"""ICEP procurement service.

Multinational procurement: joint initiatives, demand, contracts and supply-chain security.
"""
