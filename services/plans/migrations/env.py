from icep.plans.models import metadata
from icep.platform.migrations import run_env

run_env(metadata)
