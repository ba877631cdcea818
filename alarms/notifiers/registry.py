"""From `alarm = NAME PLUGIN:ARGS` to a notifier: checking at config load, building at start."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import aiohttp

from alarms.notifiers import alertmanager, cmd, curl, log, mail, webhook
from alarms.notifiers.base import Notifier, Services
from alarms.options import parse_target
from alarms.spec import AlarmSpec, AppRules, RetryPolicy

CHECKS: dict[str, Callable[[str], str | None]] = {
    "cmd": cmd.check, "log": log.check, "mail": mail.check, "curl": curl.check,
    "webhook": webhook.check, "alertmanager": alertmanager.check,
}
INSIDE_UWSGI = {
    "signal": "raises a uWSGI signal inside the uWSGI instance",
    "mule": "hands the message to a uWSGI mule inside the instance",
}


def check_plugin(plugin: str, arg: str) -> str | None:
    """Why `PLUGIN:ARG` cannot be used on the collector, or None."""
    if plugin in INSIDE_UWSGI:
        return (f"the {plugin}: alarm {INSIDE_UWSGI[plugin]}; the collector runs outside "
                f"uWSGI, so keep that alarm in uwsgi.ini (use cmd:, mail:, curl:, webhook:, "
                f"alertmanager: or log: here)")
    checker = CHECKS.get(plugin)
    if checker is None:
        return f"unknown alarm plugin {plugin!r}; use one of {', '.join(sorted(CHECKS))}"
    return checker(arg)


def build(spec: AlarmSpec, policy: RetryPolicy, services: Services,
          session: aiohttp.ClientSession) -> Notifier:
    """The notifier for a checked alarm spec."""
    timeout = policy.timeout
    if spec.plugin == "cmd":
        return cmd.CmdNotifier(spec.arg, timeout)
    if spec.plugin == "log":
        return log.LogNotifier(spec.arg, services)
    if spec.plugin == "webhook":
        return webhook.WebhookNotifier(spec.arg, session, timeout)
    if spec.plugin == "alertmanager":
        return alertmanager.AlertmanagerNotifier(spec.arg, session, timeout, services.api_url)
    target = parse_target(spec.arg, curl.OPTIONS if spec.plugin == "curl" else mail.OPTIONS)
    assert not isinstance(target, str)
    if target.url.startswith(("smtp://", "smtps://")):
        config = mail.parse_mail(target)
        assert not isinstance(config, str)
        notifier = mail.MailNotifier(config, timeout)
        notifier.plugin = spec.plugin
        return notifier
    return curl.CurlHttpNotifier(target, session, timeout)


def build_all(rules: Iterable[AppRules], services: Services,
              session: aiohttp.ClientSession) -> dict[tuple[str, str], Notifier]:
    """Every app's alarm instances, keyed by (app, alarm name)."""
    return {(app.app, spec.name): build(spec, app.retry, services, session)
            for app in rules for spec in app.alarms.values()}
