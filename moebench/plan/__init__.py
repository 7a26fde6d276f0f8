"""Suite -> Plan (widths solved, params and FLOPs counted, matching checked) -> RunSpecs."""
from .plan import Plan, PlanRow, make_plan, model_config
from .runspec import RunSpec, config_hash, run_specs
from .sweep import plan_suite

__all__ = ["Plan", "PlanRow", "RunSpec", "config_hash", "make_plan", "model_config", "plan_suite", "run_specs"]
