"""Network checks: public address, cloud-only items, bandwidth, kernel drops, connection
limits, interface errors.

Recommendations follow the seeds' packet-loss chapter (Tencent CVM "云服务器网络访问丢包":
softirq drops and net.core.netdev_max_backlog/RPS, UDP buffers and rmem/wmem with
SO_RCVBUF/SO_SNDBUF, the accept queue and somaxconn/backlog, connection limits) and
"带宽占用高" (iftop, then `lsof -i` for the process behind an address).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import numpy as np

from checks.base import Check, CheckContext, CheckResult, level_status
from checks.happenings import event_json, events_for
from checks.windows import fmt_time, groups, thresholds, total_increase, window_peaks

CLOUD_ONLY = "cloud provider feature: no DDoS black hole / billing on a self-hosted machine"


def public_addresses(facts: dict[str, Any] | None) -> list[dict[str, str]]:
    out = []
    for i in (facts or {}).get("interfaces") or []:
        for a in i.get("addresses") or []:
            try:
                ip = ipaddress.ip_address(str(a.get("address", "")).split("%")[0])
            except ValueError:
                continue
            if ip.is_global:
                out.append({"interface": str(i.get("name", "")), "address": str(ip)})
    return out


def _public_ip(ctx: CheckContext, check: Check) -> CheckResult:
    facts = ctx.facts()
    addrs = public_addresses(facts)
    net = ctx.latest("net_in")
    scoped = sorted({str(r) for r in net.loc[net["scope"] == "public", "interface"]}) if (
        not net.empty and "scope" in net and "interface" in net) else []
    if facts is None and net.empty:
        return CheckResult("unknown", "no facts snapshot yet and no net_in samples", {})
    ev = {"addresses": addrs, "public_interfaces": scoped, "facts_age_seconds": ctx.facts_age()}
    if addrs:
        return CheckResult("ok", "public address(es): " + ", ".join(f"{a['address']} ({a['interface']})" for a in addrs), ev)
    if scoped:
        return CheckResult("ok", f"public traffic on {', '.join(scoped)} (interfaces pinned or addressed as public)", ev)
    return CheckResult("ok", "no public address: the machine is reachable from the internet only through NAT or a "
                             "proxy, if at all", ev,
                       "If it must be reachable from the internet, give it a public address or forward the service "
                       "ports on the NAT gateway or router in front of it.")


def _cloud_only(ctx: CheckContext, check: Check) -> CheckResult:
    return CheckResult("not_applicable", CLOUD_ONLY, {})


# Issue 20: the seed's "实例业务状态" rows (instance expired, account in arrears) are a
# provider's billing state, which nothing on the machine can read; each is its own row of
# a report, as in the seed, and says why it does not apply.
BILLING_ONLY = ("cloud provider feature: a self-hosted machine has no subscription term that expires and no "
                "provider account that can fall into arrears")


def _billing_only(ctx: CheckContext, check: Check) -> CheckResult:
    return CheckResult("not_applicable", BILLING_ONLY, {})


def _bandwidth(ctx: CheckContext, check: Check) -> CheckResult:
    th = thresholds(check)
    rows, seen = [], 0
    for direction in ("in", "out"):
        peaks, n = window_peaks(ctx, f"bandwidth_usage_{direction}", check, th["percent"])
        seen += n
        rows += [{"direction": direction, **p.to_json()} for p in peaks]
    if not rows:
        if seen:
            return CheckResult("unknown", f"no full {th['window_seconds']:g}-second window of bandwidth usage yet",
                               {"thresholds": th})
        if ctx.latest("net_in").empty:
            return CheckResult("unknown", "no net_in samples: no network data", {"thresholds": th})
        return CheckResult("not_applicable", "no bandwidth cap configured and no link speed known "
                                             "(no bandwidth_usage_* series)", {"thresholds": th})
    caps = {k: [v.inbound, v.outbound] for k, v in (ctx.bandwidth_caps or {}).items()}
    ev = {"thresholds": th, "peaks": rows, "caps_bps": caps}
    over = [r for r in rows if r["buckets_over"] > 0]
    top = max(rows, key=lambda r: r["peak"])
    if not over:
        return CheckResult("ok", f"bandwidth 5-min average below {th['percent']:g} % (peak {top['peak']:.1f} % "
                                 f"{top.get('scope', '')} {top['direction']} at {fmt_time(top['at'])})", ev)
    w = max(over, key=lambda r: r["peak"])
    msg = "; ".join(f"{r.get('scope', '')} {r['direction']} peaked at {r['peak']:.1f} % at {fmt_time(r['at'])}"
                    for r in over)
    rec = (f"The {w.get('scope', '')} {w['direction']}bound bandwidth reached its cap. Find the traffic with "
           f"`iftop -i <interface>` (or `nethogs`), then the process behind a busy address with `lsof -i | grep <ip>` "
           f"or `ss -tnp`. Expected business traffic needs a higher cap or a CDN/cache in front; unknown traffic (a "
           f"compromised process sending) must be stopped.")
    return CheckResult(level_status(check, False, True), f"bandwidth at or above {th['percent']:g} %: {msg}", ev, rec)


DROPS = {
    "tcp_listen_overflows": (
        "TCP accept queue full",
        "A listening socket's accept queue overflowed: find it with `ss -lnt` (Recv-Q reaching Send-Q). The queue is "
        "min(net.core.somaxconn, the listen() backlog): raise net.core.somaxconn (e.g. `sysctl -w "
        "net.core.somaxconn=4096`, and persist it in /etc/sysctl.d) and the service's own backlog (nginx "
        "`listen ... backlog=4096`, the server's backlog setting), then restart the service; check that it accepts "
        "fast enough."),
    "tcp_listen_drops": (
        "TCP requests dropped by listeners",
        "Listening sockets dropped connection requests (accept queue or SYN queue full): raise net.core.somaxconn "
        "and the listen backlog as for accept-queue overflows, and net.ipv4.tcp_max_syn_backlog (e.g. 8192) for "
        "SYN bursts."),
    "udp_rcvbuf_errors": (
        "UDP receive buffer full",
        "UDP datagrams were dropped for a full receive buffer: `ss -nump` shows the socket. Raise net.core.rmem_max "
        "and net.core.rmem_default (e.g. 26214400) and restart the program; if it sets SO_RCVBUF with setsockopt, "
        "raise that value in its code or config (it is capped by rmem_max)."),
    "udp_sndbuf_errors": (
        "UDP send buffer full",
        "UDP datagrams were dropped for a full send buffer: `ss -nump` shows the socket. Raise net.core.wmem_max and "
        "net.core.wmem_default and restart the program; if it sets SO_SNDBUF with setsockopt, raise that value."),
    "softnet_dropped": (
        "softirq backlog drops",
        "Packets were dropped because a CPU's input backlog was full (/proc/net/softnet_stat, 2nd column): raise "
        "net.core.netdev_max_backlog (e.g. from 1000 to 4096) and spread receive work over CPUs with RPS "
        "(/sys/class/net/<if>/queues/rx-*/rps_cpus) or more NIC queues; `mpstat -P ALL 1` shows a core saturated "
        "in %soft."),
}


def _kernel_drops(ctx: CheckContext, check: Check) -> CheckResult:
    counts, present = {}, 0
    for metric in DROPS:
        frame = ctx.series(metric, check.lookback)
        if frame.empty:
            continue
        present += 1
        total, intervals, last = total_increase(frame)
        if total > 0:
            counts[metric] = {"count": total, "intervals": intervals, "last_at": last}
    if not present:
        return CheckResult("unknown", "no kernel drop counters (tcp_listen_*, udp_*buf_errors, softnet_dropped) "
                                      "in the lookback", {})
    ev = {"counts": counts, "checked": [m for m in DROPS]}
    if not counts:
        return CheckResult("ok", "no UDP buffer, accept queue, listen or softirq backlog drops in the lookback", ev)
    msg = "; ".join(f"{DROPS[m][0]}: {c['count']:g} (last at {fmt_time(c['last_at'])})" for m, c in counts.items())
    rec = " ".join(DROPS[m][1] for m in counts)
    return CheckResult(level_status(check, False, True), msg, ev, rec)


def _connection_limit(ctx: CheckContext, check: Check) -> CheckResult:
    th = thresholds(check)
    peaks, present = {}, 0
    for metric in ("conntrack_usage", "file_handles_usage"):
        frame = ctx.series(metric, check.lookback)
        if frame.empty:
            continue
        present += 1
        v = frame["value"].to_numpy(dtype=float)
        i = int(np.nanargmax(v))
        peaks[metric] = {"peak": round(float(v[i]), 3), "at": float(frame["ts"].to_numpy()[i])}
    events = [event_json(e) for e in events_for(ctx, check, ["Network.ConntrackFull"])]
    if not present and not events:
        return CheckResult("unknown", "no conntrack_usage or file_handles_usage samples in the lookback", {"thresholds": th})
    ev = {"thresholds": th, "peaks": peaks, "events": events}
    conntrack = events or peaks.get("conntrack_usage", {}).get("peak", 0) >= th["percent"]
    files = peaks.get("file_handles_usage", {}).get("peak", 0) >= th["percent"]
    if not conntrack and not files:
        return CheckResult("ok", "connection tracking and file handles stayed below "
                                 f"{th['percent']:g} % of their limits", ev)
    parts, recs = [], []
    if conntrack:
        p = peaks.get("conntrack_usage")
        parts.append(f"conntrack table peaked at {p['peak']:.1f} % at {fmt_time(p['at'])}" if p else "")
        if events:
            parts.append(f"\"nf_conntrack: table full, dropping packet\" x{sum(e['count'] for e in events)}")
        recs.append("The connection-tracking table filled up and new connections were dropped: raise "
                    "net.netfilter.nf_conntrack_max (e.g. double `sysctl net.netfilter.nf_conntrack_max`, and the "
                    "hash size /sys/module/nf_conntrack/parameters/hashsize with it), shorten "
                    "net.netfilter.nf_conntrack_tcp_timeout_established if idle flows linger, and see `conntrack -S`.")
    if files:
        p = peaks["file_handles_usage"]
        parts.append(f"file handles peaked at {p['peak']:.1f} % of fs.file-max at {fmt_time(p['at'])}")
        recs.append("The system file-handle table is nearly full: raise fs.file-max (`sysctl -w fs.file-max=<2x "
                    "current>`, persist it in /etc/sysctl.d) and find the process holding most descriptors: "
                    "`for p in /proc/[0-9]*; do echo \"$(ls $p/fd 2>/dev/null | wc -l) $p\"; done | sort -n | tail` "
                    "(a descriptor leak if it keeps growing).")
    return CheckResult(level_status(check, False, True), "; ".join(p for p in parts if p), ev, " ".join(recs))


NIC = ("net_in_errors", "net_out_errors", "net_in_drops", "net_out_drops")


def _nic_errors(ctx: CheckContext, check: Check) -> CheckResult:
    th = thresholds(check)
    step = th.get("window_seconds", 300)
    per_if: dict[str, dict[str, Any]] = {}
    present = 0
    for metric in NIC:
        frame = ctx.series(metric, check.lookback, step=step, agg="avg")
        if frame.empty:
            continue
        present += 1
        for labels, ts, v in groups(frame, ["interface"] if "interface" in frame else []):
            name = labels.get("interface", "")
            d = per_if.setdefault(name, {"interface": name, "buckets": set(), "peaks": {}})
            hit = v > th["rate"]
            d["buckets"].update(ts[hit].tolist())
            if hit.any():
                d["peaks"][metric] = {"peak_per_s": round(float(np.nanmax(v)), 3), "buckets": int(hit.sum())}
    if not present:
        return CheckResult("unknown", "no interface error or drop samples in the lookback", {"thresholds": th})
    rows = [{"interface": d["interface"], "buckets_with_errors": len(d["buckets"]), "by_kind": d["peaks"],
             "first": min(d["buckets"]) if d["buckets"] else None, "last": max(d["buckets"]) if d["buckets"] else None}
            for d in per_if.values()]
    bad = [r for r in rows if r["buckets_with_errors"] >= th["buckets"]]
    ev = {"thresholds": th, "interfaces": rows}
    if not bad:
        return CheckResult("ok", f"no interface had errors or drops in {th['buckets']:g} or more 5-min windows", ev)
    msg = "; ".join(f"{r['interface']}: " + ", ".join(f"{k} up to {p['peak_per_s']:g}/s" for k, p in r["by_kind"].items())
                    + f" in {r['buckets_with_errors']} windows" for r in bad)
    w = max(bad, key=lambda r: r["buckets_with_errors"])["interface"]
    rec = (f"Interface {w} keeps dropping or erring: `ip -s link show {w}` and `ethtool -S {w}` name the counter. "
           f"rx_missed/fifo/no-buffer drops mean the ring or backlog overflows: `ethtool -G {w} rx 4096` and "
           f"net.core.netdev_max_backlog; CRC/frame errors mean a bad cable, port or duplex mismatch (`ethtool {w}`); "
           f"drops of unknown protocols or VLANs are harmless. On a VM ask the provider about the host.")
    return CheckResult(level_status(check, False, True), msg, ev, rec)


CHECKS: tuple[Check, ...] = (
    Check("network.public_ip", "network", "Public address", "non_critical",
          "Whether the machine has a public address (informational).",
          "Give the machine a public address or forward its ports if it must be reachable from the internet.",
          _public_ip),
    Check("network.ddos_blackhole", "network", "DDoS black hole", "critical",
          "Cloud only: the provider black-holed the public address after a DDoS attack.",
          "Not applicable on a self-hosted machine.", _cloud_only),
    Check("network.public_ip_arrears", "network", "Public address in arrears", "critical",
          "Cloud only: the public address is cut off for unpaid bills.",
          "Not applicable on a self-hosted machine.", _cloud_only),
    # issue 20: the seed's instance business state rows
    Check("network.instance_expired", "network", "Instance expired", "critical",
          "Cloud only: the prepaid instance reached the end of its term and is stopped or about to be released.",
          "Not applicable on a self-hosted machine; on a cloud instance, renew it before it expires.", _billing_only),
    Check("network.account_arrears", "network", "Account in arrears", "critical",
          "Cloud only: the provider account is in arrears, so its pay-as-you-go instances are stopped.",
          "Not applicable on a self-hosted machine; on a cloud instance, top up the account.", _billing_only),
    Check("network.bandwidth", "network", "Bandwidth usage", "non_critical",
          "Public/private in/out bandwidth against the cap or link speed, as 5-minute averages.",
          "Find the traffic with iftop and the process with `lsof -i`; raise the cap if it is expected.",
          _bandwidth, thresholds={"percent": 90, "window_seconds": 300}),
    Check("network.kernel_drops", "network", "Kernel network drops", "non_critical",
          "UDP send/receive buffer full, TCP accept queue full, TCP request overflow, softirq backlog drops.",
          "Raise the sysctl behind the drop (somaxconn, rmem/wmem, netdev_max_backlog).",
          _kernel_drops),
    Check("network.connection_limit", "network", "Connection limits", "non_critical",
          "The conntrack table or the file-handle table at its limit.",
          "Raise net.netfilter.nf_conntrack_max or fs.file-max.",
          _connection_limit, thresholds={"percent": 90}),
    Check("network.nic_errors", "network", "Interface errors and drops", "non_critical",
          "Errors or drops on an interface in several 5-minute windows of the lookback.",
          "Read `ethtool -S <interface>` for the counter that rises.",
          _nic_errors, thresholds={"rate": 0, "buckets": 3, "window_seconds": 300}),
)
