"""Reports pipeline specs that cannot be used as an Airflow import error of this file.

Airflow keys import errors by DAG file and marks every DAG of a failing file stale, so the DAG
factory (forecast_pipelines.py) skips a broken spec and this file, which defines no DAG, raises
one error that names each broken spec file, field and fix. The other pipelines keep loading.
A spec is broken when it does not validate, when reading it is refused (over 64 KiB, YAML anchors
or aliases, a source outside the allowed folders), or when another file defines the same pipeline
(`x.yaml` and `x.yml`: both are left out). Each message is bounded (freshcast.spec.QUOTE_LIMIT).
"""

from __future__ import annotations

from freshcast.spec import SpecError, spec_problems

_problems = spec_problems()
if _problems:
    raise SpecError(
        f"{len(_problems)} pipeline spec(s) have problems; their DAGs are not loaded:\n\n"
        + "\n\n".join(_problems)
    )
