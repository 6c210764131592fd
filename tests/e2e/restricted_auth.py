"""An auth manager for the UI tests: Airflow's SimpleAuthManager, except that the user
`outsider` may read no freshcast DAG, as a deployment with per-DAG permissions (FAB, Keycloak)
would have it. SimpleAuthManager's own roles all read every DAG, so without this the plugin's
per-DAG read check could not be seen refusing anyone."""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

OUTSIDER = "outsider"


class RestrictedAuthManager(SimpleAuthManager):
    def is_authorized_dag(self, *, method: Any, user: Any, access_entity=None, details=None):
        if user.username == OUTSIDER and details is not None and details.id:
            if details.id.split("_", 1)[0] in ("train", "forecast", "rollback"):
                return False
        return super().is_authorized_dag(
            method=method, user=user, access_entity=access_entity, details=details
        )
