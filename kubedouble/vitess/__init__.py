"""The simulated Vitess side of the double: vitess-operator, vtctld (exec), vtgate (proxy), vtadmin (HTTP).

``install(double)`` wires them into a ``KubeDouble`` (server.py calls it when
``DoubleConfig.operators`` or ``mysql_backend`` is set) and returns the shared
``VitessState``; ``double.vitess`` is that state, ``double.vtgate`` the proxy's listeners and
``double.vtadmin`` vtadmin's HTTP listeners (closed when the double stops).
Modules: names (object names and labels), desired (the operator's plan, pure), processes
(what the kubelet's simulated containers log and whether they exit), status
(status fields, pure), operator (the Controller), state (topology stand-in), vtctld (exec
handler), vtgate + mysqlwire (MySQL proxy), vtadmin (vtadmin's API and web UI over HTTP).
Nothing here may be imported by vtflow itself.
"""

from __future__ import annotations

from .state import Backend, VitessState


def install(double, *, operators: bool = True) -> VitessState:
    from ..controllers.etcd_operator import etcd_operator
    from .operator import VitessOperator
    from .processes import VitessHttp, vitess_component, vitess_operator
    from .vtadmin import VtadminListeners
    from .vtctld import Vtctld
    from .vtgate import VtgateListeners

    cfg = double.config
    backend = Backend.parse(cfg.mysql_backend, cfg.mysql_user, cfg.mysql_password) if cfg.mysql_backend else None
    state = VitessState(backend=backend)
    double.vitess = state
    double.vtgate = VtgateListeners(double, state, cfg.vtgate_host)
    double.add_controller(double.vtgate)
    double.vtadmin = VtadminListeners(double, state, cfg.vtgate_host)
    double.add_controller(double.vtadmin)
    if operators:
        double.add_controller(VitessOperator(state))
        if double.kubelet is not None:
            for program in (vitess_component, vitess_operator, etcd_operator):
                double.kubelet.add_program(program)
    double.register_exec(Vtctld(double, state), label_selector="planetscale.com/component=vtctld")
    for program in ("vttablet", "vtgate"):
        double.register_exec(VitessHttp(double, state, program), label_selector=f"planetscale.com/component={program}",
                             container=program)
    return state


__all__ = ["Backend", "VitessState", "install"]
