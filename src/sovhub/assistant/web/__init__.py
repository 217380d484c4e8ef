"""The web assistant: server-rendered pages (Jinja2, gettext catalogs) with small progressive JavaScript.

Routers: sign-in and language (auth), chat pages and streaming (chat), documents attached to a
conversation (attachments), my data (account), citation passages (kb), the transparency report
and icon (public), staff area (admin, admin_access, admin_content_access, admin_appeals, admin_console, admin_person,
admin_credits),
credits for organizations and partners (credits_pages).
Templates and static files live in ``sovhub/web``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["routers"]


def routers() -> list[Any]:
    from . import (
        account,
        admin,
        admin_access,
        admin_appeals,
        admin_console,
        admin_content_access,
        admin_credits,
        admin_person,
        attachments,
        auth,
        chat,
        credits_pages,
        kb,
        public,
    )

    return [auth.router, chat.router, attachments.router, account.router, kb.router, admin.router, admin_access.router,
            admin_content_access.router, admin_appeals.router, admin_console.router, admin_person.router,
            admin_credits.router,
            credits_pages.router, public.router]
