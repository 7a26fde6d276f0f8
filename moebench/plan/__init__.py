"""Suite -> Plan (widths solved, params and FLOPs counted, matching checked) -> RunSpecs."""
from .plan import Plan, PlanRow, make_plan, model_config
from .runspec import RunSpec, config_hash, run_specs
from .sweep import plan_suite
from .shard import Shard, parse_shard

__all__ = ["Plan", "PlanRow", "RunSpec", "Shard", "config_hash", "make_plan", "model_config", "parse_shard", "plan_suite",
           "run_specs"]
