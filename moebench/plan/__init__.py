"""Suite -> Plan (widths solved, params and FLOPs counted, matching checked) -> RunSpecs."""
from .plan import Plan, PlanRow, make_plan, model_config, plan_suite
from .runspec import RunSpec, config_hash, run_specs

__all__ = ["Plan", "PlanRow", "RunSpec", "config_hash", "make_plan", "model_config", "plan_suite", "run_specs"]
