"""Create or update the embedded Airflow's logins in the FAB auth manager's tables.

Run by `make up` (stack.airflow.ensure_logins) in Airflow's environment, only when
the database disagrees with `.env.airflow`:
    python -m stack.airflow_logins < [{"username": ..., "password": ..., "role": ...}]
The passwords come on stdin, never on a command line another user could read.
"""

from __future__ import annotations

import json
import sys


def main() -> int:
    wanted = json.load(sys.stdin)
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder
    from werkzeug.security import check_password_hash

    with get_application_builder() as appbuilder:
        security = appbuilder.sm
        for login in wanted:
            name, password = login["username"], login["password"]
            role = security.find_role(login["role"])
            if role is None:
                sys.stderr.write(f"error: Airflow has no role {login['role']!r}\n")
                return 1
            user = security.find_user(username=name)
            if user is None:
                created = security.add_user(
                    username=name,
                    first_name=name,
                    last_name=login["role"],
                    email=f"{name}@localhost",
                    role=role,
                    password=password,
                )
                if not created:
                    sys.stderr.write(f"error: FAB refused to create the login {name!r}\n")
                    return 1
                print(f"created {name} ({login['role']})")
                continue
            if [r.name for r in user.roles] != [role.name] or not user.active:
                user.roles = [role]
                user.active = True
                security.update_user(user)
                print(f"{name}: role {role.name}, active")
            if not check_password_hash(user.password or "", password):
                security.reset_password(user.id, password)
                print(f"{name}: password updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
