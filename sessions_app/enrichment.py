"""Request metadata, minimised before it touches anything else.

The client address is truncated to its /24 (IPv4) or /48 (IPv6) network the
moment it is read; the full address is never returned from here, so it cannot
reach a table or a log line. The user agent is reduced to device type, browser
and OS with ua-parser (via user-agents); the country comes from geoip2fast's
bundled database (no account, no download at run time).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

_geoip = None
_geoip_lock = threading.Lock()


@dataclass(frozen=True)
class DeviceInfo:
    device_type: str
    browser: str
    browser_version: str
    os: str
    os_version: str


@dataclass(frozen=True)
class RequestMeta:
    """What a request tells us about the visitor, already minimised."""

    ip_truncated: str
    country: str
    device: DeviceInfo
    gpc: bool
    # The raw user agent, kept only as consent proof (privacy.ConsentRecord), truncated.
    user_agent: str = ""


def client_ip(meta: dict[str, Any]) -> str:
    """The client address: REMOTE_ADDR, or the right X-Forwarded-For hop behind trusted proxies."""
    proxies = settings.REST_FRAMEWORK.get("NUM_PROXIES") or 0
    xff = meta.get("HTTP_X_FORWARDED_FOR", "")
    if proxies and xff:
        hops = [h.strip() for h in xff.split(",") if h.strip()]
        if hops:
            return hops[-min(proxies, len(hops))]
    return meta.get("REMOTE_ADDR", "") or ""


def truncate_ip(raw: str) -> str:
    """81.2.69.142 -> 81.2.69.0; 2001:db8:85a3::8a2e:370:7334 -> 2001:db8:85a3::. Invalid -> ''."""
    try:
        addr = ipaddress.ip_address(raw.strip())
    except ValueError:
        return ""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False).network_address)


def _geo():
    global _geoip
    if _geoip is None:
        with _geoip_lock:
            if _geoip is None:
                from geoip2fast import GeoIP2Fast

                # The IPv6 file covers IPv4 too.
                _geoip = GeoIP2Fast(geoip2fast_data_file="geoip2fast-ipv6.dat.gz")
    return _geoip


@lru_cache(maxsize=65536)
def country_for_network(network: str) -> str:
    """Country of a truncated network. A /24 or /48 almost never spans two countries."""
    if not network or not settings.GEOIP_ENABLED:
        return ""
    try:
        code = _geo().lookup(network).country_code
    except Exception:  # the lookup library raises bare exceptions on odd input
        logger.warning("geoip lookup failed for a network")
        return ""
    return code if code and len(code) == 2 and code.isalpha() and code != "--" else ""


@lru_cache(maxsize=8192)
def parse_user_agent(ua: str) -> DeviceInfo:
    if not ua:
        return DeviceInfo("other", "", "", "", "")
    from user_agents import parse

    parsed = parse(ua[:1024])
    if parsed.is_bot:
        device_type = "bot"
    elif parsed.is_tablet:
        device_type = "tablet"
    elif parsed.is_mobile:
        device_type = "mobile"
    elif parsed.is_pc:
        device_type = "desktop"
    else:
        device_type = "other"
    return DeviceInfo(
        device_type=device_type,
        browser=(parsed.browser.family or "")[:64],
        browser_version=(parsed.browser.version_string or "")[:32],
        os=(parsed.os.family or "")[:64],
        os_version=(parsed.os.version_string or "")[:32],
    )


def request_meta_from(meta: dict[str, Any], *, user_agent: str | None = None, ip: str | None = None) -> RequestMeta:
    """Build RequestMeta from a WSGI/ASGI META dict (or explicit values, as /v1 context gives)."""
    network = truncate_ip(ip if ip is not None else client_ip(meta))
    ua = user_agent if user_agent is not None else meta.get("HTTP_USER_AGENT", "")
    return RequestMeta(
        ip_truncated=network,
        country=country_for_network(network),
        device=parse_user_agent(ua),
        gpc=meta.get("HTTP_SEC_GPC", "").strip() == "1",
        user_agent=ua[:512],
    )
