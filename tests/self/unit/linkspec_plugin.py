"""A link type from outside fabqual, as another package would register it (used by test_linkspec)."""

from __future__ import annotations

from dataclasses import dataclass

from fabqual.links.base import LinkContext, LinkSession
from fabqual.linkspec import LinkSpec, link_type


@dataclass(frozen=True, kw_only=True)
class DemoParams:
    """No parameters."""


@link_type(
    LinkSpec(
        name="demo_link",
        short="demo",
        params=DemoParams,
        roles={"a": "demo_end", "b": "demo_end"},
        capabilities=("ip_tunnel",),
        metrics=("loss_pct",),
    )
)
class DemoLink:
    def __init__(self, context: LinkContext) -> None:
        self.context = context

    def up(self) -> LinkSession:
        return LinkSession(self.context.link)

    def down(self) -> None:
        return None
