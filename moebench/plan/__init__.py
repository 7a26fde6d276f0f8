"""Suite -> Plan (widths solved, params and FLOPs counted, matching checked) -> RunSpecs."""
from .plan import Plan, PlanRow, make_plan, model_config, plan_suite
from .runspec import RunSpec, config_hash, run_specs
from .shard import Shard, parse_shard

__all__ = ["Plan", "PlanRow", "RunSpec", "Shard", "config_hash", "make_plan", "model_config", "parse_shard", "plan_suite",
           "run_specs"]
