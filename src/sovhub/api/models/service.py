"""Which models a principal may use: those some allowed backend serves (policies applied)."""

from __future__ import annotations

import time

from ...backends.registry import BackendRegistry
from ...errors import BackendUnavailable, ModelNotFound, SovhubError
from ...hub import Hub
from ...pipeline import ChatContext, Principal
from .protocol import Model

__all__ = ["get_model", "list_models"]

_STARTED = int(time.time())


def _ctx(principal: Principal, model: str) -> ChatContext:
    return ChatContext(request_id="models", principal=principal, model=model, messages=[], params={}, stream=False)


def _running(hub: Hub) -> BackendRegistry:
    registry = hub.services.get(BackendRegistry)
    if not registry.running:
        raise BackendUnavailable("the hub is starting; retry shortly")
    return registry


def _card(hub: Hub, model: str, principal: Principal) -> Model | None:
    registry = _running(hub)
    try:
        backends = registry.candidates(_ctx(principal, model), model)
    except SovhubError:
        return None
    owner = backends[0].config.operator or "sovhub"
    return Model(id=model, created=_STARTED, owned_by=owner)


def list_models(hub: Hub, principal: Principal) -> list[Model]:
    registry = _running(hub)
    ids = registry.model_ids()
    if hub.settings.embeddings_enabled:
        ids.append(hub.settings.embeddings_model_id)
    cards = []
    for model in ids:
        if model == hub.settings.embeddings_model_id:
            cards.append(Model(id=model, created=_STARTED, owned_by="sovhub"))
            continue
        card = _card(hub, model, principal)
        if card is not None:
            cards.append(card)
    return cards


def get_model(hub: Hub, principal: Principal, model: str) -> Model:
    for card in list_models(hub, principal):
        if card.id == model:
            return card
    raise ModelNotFound(f"The model `{model}` does not exist or you do not have access to it.", param="model")
