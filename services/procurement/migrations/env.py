from icep.platform.migrations import run_env
from icep.procurement.models import metadata

run_env(metadata)
