"""The OCDS export of initiatives: releases written with each change, packages and records read."""
