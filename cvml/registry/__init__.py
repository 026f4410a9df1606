"""Model registry: versions, aliases (prod, canary) with rollback, lineage, audit events.

    from cvml.registry import Registry
    reg = Registry()                       # $CVML_HOME/registry.db
    v = reg.register("runs/r1/final", "cv-rewriter", "finetune", parent="tiny-base@1")
    reg.promote(v.ref, "prod", reason="beats v1 on bench")
    reg.resolve("cv-rewriter@prod").path
"""

from cvml.registry.records import KINDS, DatasetRef, Event, Lineage, LineageNode, ModelVersion
from cvml.registry.refs import LATEST, Ref, parse_ref
from cvml.registry.store import Registry, default_registry_path

__all__ = [
    "KINDS",
    "LATEST",
    "DatasetRef",
    "Event",
    "Lineage",
    "LineageNode",
    "ModelVersion",
    "Ref",
    "Registry",
    "default_registry_path",
    "parse_ref",
]
