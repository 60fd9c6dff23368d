"""The REST API says why a device's tags are ``comm_lost`` (issue 18, item 8).

The served test site (simulator, Modbus over loopback TCP): the heat meter answers every
read with Modbus exception code 2; its tags turn ``bad/comm_lost`` with that cause as the
``detail``, in ``GET /api/tags/{name}`` and ``GET /api/tags``; it goes when the meter answers.
"""

from __future__ import annotations

from tags.model import Quality, Reason
from tests.scada.server_fixtures import (
    Served,
    served_fixture,  # noqa: F401
)

TAG = "b1.hm.energy_kwh"


async def test_api_shows_the_cause_of_a_comm_loss(served: Served) -> None:
    sim = served.runtime.simulator
    assert sim is not None
    sim.set_fault("b1.hm", "garbage", mode="exception", code=2)
    await served.wait_for(lambda: served.db.read(TAG).reason is Reason.COMM_LOST, "b1.hm.*")
    st, body, _ = await served.api("GET", f"/api/tags/{TAG}", role="viewer")
    assert st == 200, body
    assert (body["quality"], body["reason"]) == ("bad", "comm_lost")
    assert body["detail"].startswith("Modbus exception code 2 (illegal data address), FC3 "), body
    st, listing, _ = await served.api("GET", "/api/tags?device=b1.hm", role="viewer")
    assert st == 200
    by_name = {t["name"]: t for t in listing["tags"]}
    assert by_name[TAG]["detail"] == body["detail"]
    assert "detail" not in by_name["b1.hm.online"]  # the status tags are good
    sim.clear_fault("b1.hm")
    drivers = served.runtime.drivers
    assert drivers is not None
    drivers.drivers["b1-bus"].probe_now("b1.hm")  # offline_probe_s is 2 s: probe now
    await served.wait_for(lambda: served.db.read(TAG).quality is Quality.GOOD, "b1.hm.*")
    st, body, _ = await served.api("GET", f"/api/tags/{TAG}", role="viewer")
    assert body["quality"] == "good" and "detail" not in body
