"""fabqual's mark on what it creates or changes in a vCenter: which run, and how to undo it.

Two kinds of mark, by what the object offers:

- a switch or port group fabqual *creates* is the run's whole: its description is
  :data:`MARK` followed by the run's owner as JSON;
- an object fabqual *changes* (a host's vmknic, ``Net.PVRDMAVmknic`` and firewall
  ruleset, a VM's PVRDMA adapter and memory lock, an existing switch's MTU) carries
  the custom attribute :data:`FIELD` (one definition per object type, made on first
  use): the owner and, written *before* each change, the undo of that change as data
  (the value it had, the vSphere spec to put back). A later process that finds the
  owner dead replays those steps (:mod:`fabqual.vsphere.left`).

An object with neither mark is never touched by a sweep.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from pyVmomi import VmomiSupport
from pyVmomi.SoapAdapter import Deserialize, Serialize

from fabqual.drivers.rundir import RunOwner
from fabqual.errors import DriverError
from fabqual.vsphere.session import VCenterSession

MARK = "fabqual-run: "  # the description of a switch or port group fabqual created
FIELD = "fabqual.run"  # the custom attribute on an object fabqual changed

Step = dict[str, Any]


def description_mark(owner: RunOwner) -> str:
    return MARK + owner.to_json()


def description_owner(description: str | None) -> RunOwner | None:
    """The run named by a created object's description, or None when it is not fabqual's."""
    text = description or ""
    return RunOwner.from_json(text[len(MARK) :]) if text.startswith(MARK) else None


@dataclass
class Mark:
    """The custom attribute's value: the owning run and its undo steps, oldest first."""

    owner: RunOwner
    steps: list[Step] = field(default_factory=list)

    def to_text(self) -> str:
        return json.dumps({"owner": asdict(self.owner), "undo": self.steps}, sort_keys=True)

    @classmethod
    def from_text(cls, text: str) -> Mark | None:
        try:
            data = json.loads(text)
            owner = RunOwner.from_json(json.dumps(data["owner"]))
            steps = data["undo"]
        except (ValueError, KeyError, TypeError):
            return None
        if owner is None or not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
            return None
        return cls(owner, steps)


def to_xml(obj: Any) -> str:
    """A vSphere data object (a vmknic spec, a NIC backing) as text a later process reads back."""
    data: bytes = Serialize(obj, version=VmomiSupport.newestVersions.GetName("vim"))
    return data.decode()


def from_xml(text: str) -> Any:
    return Deserialize(text)


class Marks:
    """Reads and writes :data:`FIELD` on objects through one session."""

    def __init__(self, session: VCenterSession) -> None:
        self.session = session
        self._keys: dict[type, int] = {}

    def _manager(self, target: str) -> Any:
        manager = self.session.content.customFieldsManager
        if manager is None:
            raise DriverError(
                f"{self.session.name}: {target}: no custom attributes here (a standalone ESXi?): fabqual marks what"
                " it changes with one; connect to the vCenter"
            )
        return manager

    def key(self, kind: type, target: str, *, create: bool) -> int | None:
        """The attribute's key for objects of ``kind``; made when missing and ``create``."""
        if kind in self._keys:
            return self._keys[kind]
        manager = self._manager(target)
        fields = self.session.call(target, "read custom attributes", lambda: list(manager.field or []))
        found = next((f.key for f in fields if f.name == FIELD and f.managedObjectType is kind), None)
        if found is None and create:
            made = self.session.call(
                target, f"AddCustomFieldDef {FIELD}", lambda: manager.AddCustomFieldDef(name=FIELD, moType=kind)
            )
            found = made.key
        if found is not None:
            self._keys[kind] = int(found)
        return self._keys.get(kind)

    def read(self, entity: Any, target: str) -> Mark | None:
        key = self.key(type(entity), target, create=False)
        if key is None:
            return None
        values = self.session.call(target, "read custom attributes", lambda: list(entity.customValue or []))
        # The last value of the key: vcsim appends a new value where vCenter replaces it.
        text = next((str(v.value) for v in reversed(values) if v.key == key), "")
        return Mark.from_text(text) if text else None

    def write(self, entity: Any, target: str, mark: Mark | None) -> None:
        """Set the object's mark (``None``: clear it)."""
        key = self.key(type(entity), target, create=True)
        manager = self._manager(target)
        value = mark.to_text() if mark is not None else ""
        self.session.call(target, f"SetField {FIELD}", lambda: manager.SetField(entity=entity, key=key, value=value))
