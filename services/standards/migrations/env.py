from icep.platform.migrations import run_env
from icep.standards.models import metadata

run_env(metadata)
