"""Benchmarks of the platform's delivery path; `make bench` runs them and writes bench/REPORT.md."""
