"""The kernel-log catalogue: which /dev/kmsg lines are faults, as data.

Each `Pattern` says what one kind of kernel report looks like. The wording comes from
the Linux sources (the printk format strings, with the `pr_fmt` prefix a subsystem
adds) and, where kernels differ, from both the current and the older wording.

Roles, because only the first line of a report is a finding:
- `finding`: the line starts a report and is one finding;
- `follow`: a finding only when no report of the same kind is open; inside one it is part
  of that report (the `Oops:` line after `BUG: kernel NULL pointer dereference`);
- `header`: opens a report whose finding comes later, and gives it labels and evidence
  (`python3 invoked oom-killer` before `Killed process`);
- `context`: adds labels to the open report of its kind (`oom-kill:constraint=...`).

`fold` names the labels that make two reports the same fault within one cycle (the same
task blocked for 5, 10, 15 s; a burst of I/O errors on one device).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CRITICAL = "CRITICAL"
WARN = "WARN"
INFO = "INFO"


@dataclass(frozen=True, slots=True)
class Kind:
    event: str
    level: str
    fold: tuple[str, ...]
    # A report of this kind goes on after its first line (a call trace, a register or memory
    # dump). A one-line kind takes no lines after it: in a storm of I/O errors the next
    # unrelated warning is not its evidence.
    traced: bool = True


# One row per signal kind: the event it maps to, its level, and its fold key. Every pattern
# of a kind takes these from here, so two patterns of one kind always fold together.
KINDS: dict[str, Kind] = {
    "hung_task": Kind("Kernel.HungTask", CRITICAL, ("task", "pid")),
    "soft_lockup": Kind("Kernel.SoftLockup", CRITICAL, ("cpu", "pid")),
    "hard_lockup": Kind("Kernel.HardLockup", CRITICAL, ("cpu",)),
    "rcu_stall": Kind("Kernel.RCUStall", WARN, ("flavor",)),
    "panic": Kind("Kernel.Panic", CRITICAL, ()),
    "oops": Kind("Kernel.Panic", CRITICAL, ()),
    "oom_kill": Kind("Kernel.OOMKill", CRITICAL, ("pid",)),
    "io_error": Kind("Disk.IOError", CRITICAL, ("device",), traced=False),
    "fs_error": Kind("Disk.IOError", CRITICAL, ("device",), traced=False),
    "readonly_remount": Kind("Disk.ReadOnly", CRITICAL, ("device",), traced=False),
    "conntrack_full": Kind("Network.ConntrackFull", WARN, (), traced=False),
    "link_down": Kind("Network.LinkDown", WARN, ("interface",), traced=False),
    # NVIDIA's driver (issue 20): one event type, two levels. An Xid that NVIDIA's Xid
    # catalogue resolves with a GPU reset, a reboot or service (XID_CRITICAL) is critical;
    # the others (13, 31, 43, 45...) usually come from the application that used the GPU.
    "gpu_xid_critical": Kind("GPU.XidError", CRITICAL, ("pci", "xid"), traced=False),
    "gpu_xid": Kind("GPU.XidError", WARN, ("pci", "xid"), traced=False),
}

# 46 GPU stopped processing, 48 double-bit ECC error, 62 internal micro-controller halt,
# 63/64 ECC page retirement or row remapping recorded / failed, 74 NVLink error, 79 GPU has
# fallen off the bus, 92 high single-bit ECC rate, 95 uncontained ECC error, 119/120 GSP
# RPC timeout / GSP error, 140 unrecovered ECC error, 154 GPU recovery action changed.
XID_CRITICAL = (46, 48, 62, 63, 64, 74, 79, 92, 95, 119, 120, 140, 154)


@dataclass(frozen=True, slots=True)
class Pattern:
    kind: str
    # A literal every matching line contains: a cheap `in` test spares the regex on most lines.
    needle: str
    regex: re.Pattern[str]
    event: str
    level: str
    fold: tuple[str, ...]
    role: str = "finding"

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels this pattern extracts: its regex's named groups."""
        return tuple(self.regex.groupindex)

    def match(self, message: str) -> dict[str, str] | None:
        if self.needle not in message:
            return None
        m = self.regex.search(message)
        if m is None:
            return None
        return {k: v for k, v in m.groupdict().items() if v is not None}


def _p(kind: str, needle: str, regex: str, role: str = "finding") -> Pattern:
    k = KINDS[kind]
    return Pattern(kind, needle, re.compile(regex), k.event, k.level, k.fold, role)


_DEV = r"(?P<device>[^\s,()]+)"
_XID = (r"^NVRM: Xid \((?:PCI:)?(?P<pci>[0-9a-fA-F]{{4}}:[0-9a-fA-F]{{2}}:[0-9a-fA-F]{{2}})[^)]*\): (?P<xid>{xid}), "
        r"(?:pid=(?:'?<unknown>'?|(?P<pid>\d+)), (?:name=(?:<unknown>|(?P<process>[^,]*)), )?)?(?P<detail>.*?)\s*$")

# Order matters: the first pattern that matches a line decides it. Panic comes first
# because its reason may quote another report ("Kernel panic - not syncing: Hard LOCKUP",
# "... Watchdog detected hard LOCKUP on cpu 0"); a read-only shutdown before the
# corruption that XFS names in the same line.
PATTERNS: tuple[Pattern, ...] = (
    # kernel/panic.c: "Kernel panic - not syncing: %s"; the "---[ end Kernel panic" trailer is no new one.
    _p("panic", "Kernel panic - not syncing", r"^Kernel panic - not syncing: (?P<reason>.*?)\s*$"),
    # kernel/hung_task.c: "INFO: task %s:%d blocked for more than %ld seconds."
    _p("hung_task", "blocked for more than", r"INFO: task (?P<task>.+):(?P<pid>\d+) blocked for more than (?P<seconds>\d+) seconds"),
    # kernel/watchdog.c (pr_fmt "watchdog: "): "BUG: soft lockup - CPU#%d stuck for %us! [%s:%d]"
    _p("soft_lockup", "soft lockup - CPU#", r"BUG: soft lockup - CPU#(?P<cpu>\d+) stuck for (?P<seconds>\d+)s! \[(?P<process>.*):(?P<pid>\d+)\]"),
    # kernel/watchdog.c: "CPU%u: Watchdog detected hard LOCKUP on cpu %u" (6.x);
    # kernel/watchdog_hld.c (pr_fmt "NMI watchdog: "): "Watchdog detected hard LOCKUP on cpu %d" (older).
    _p("hard_lockup", "hard LOCKUP on cpu", r"Watchdog detected hard LOCKUP on cpu (?P<cpu>\d+)"),
    # kernel/rcu/tree_stall.h (pr_fmt "rcu: "): "INFO: %s detected stalls on CPUs/tasks:",
    # "INFO: %s self-detected stall on CPU", "INFO: %s detected expedited stalls on CPUs/tasks: {".
    _p("rcu_stall", "stall", r"INFO: (?P<flavor>\S+) (?:self-detected stall|detected (?:expedited )?stalls) on CPU"),
    # "%s kthread starved for %ld jiffies!": part of a stall report, alone a stall of its own.
    _p("rcu_stall", "kthread starved for", r"(?P<flavor>\S+) kthread starved for (?P<jiffies>\d+) jiffies", "follow"),
    # arch/x86/mm/fault.c: "BUG: kernel NULL pointer dereference, address: %px",
    # "BUG: unable to handle page fault for address: %px"; older "... kernel paging request at %p".
    _p("oops", "BUG: kernel NULL pointer dereference", r"^BUG: kernel NULL pointer dereference, address: (?P<address>[0-9a-fx]+)"),
    _p("oops", "BUG: unable to handle", r"^BUG: unable to handle (?:page fault for address: |kernel (?:NULL pointer dereference|paging request) at )(?P<address>[0-9a-fx]+)"),
    # arch/arm64/mm/fault.c: "Unable to handle kernel %s at virtual address %016lx"
    _p("oops", "Unable to handle kernel", r"^Unable to handle kernel (?:NULL pointer dereference|paging request) at virtual address (?P<address>[0-9a-f]+)"),
    # lib/bug.c: "kernel BUG at %s:%u!"
    _p("oops", "kernel BUG at", r"^kernel BUG at (?P<location>\S+)!"),
    # arch/x86/kernel/dumpstack.c: "Oops: %s: %04lx [#%d]..." (6.9+), "%s: %04lx [#%d]..." before;
    # arm64 "Internal error: %s: %016lx [#%d]". After a BUG line above they are its second line.
    _p("oops", "Oops", r"^(?:Internal error: )?Oops: (?:(?P<what>.+?): )?(?P<code>[0-9a-f]{4,}) \[#(?P<number>\d+)\]", "follow"),
    _p("oops", "general protection fault", r"^general protection fault\b", "follow"),
    _p("oops", "invalid opcode", r"^invalid opcode: [0-9a-f]+ \[#\d+\]", "follow"),
    # mm/oom_kill.c: "%s invoked oom-killer: gfp_mask=%#x(%pGg), order=%d, oom_score_adj=%hd"
    _p("oom_kill", "invoked oom-killer", r"^(?P<trigger>.+?) invoked oom-killer: ", "header"),
    # mm/oom_kill.c dump_oom_summary: "oom-kill:constraint=%s,nodemask=%*pbl,...,task_memcg=...,task=%s,pid=%d,uid=%d"
    _p("oom_kill", "oom-kill:constraint=", r"^oom-kill:constraint=(?P<constraint>\w+)(?:.*,task_memcg=(?P<memcg>[^,]*))?", "context"),
    # mm/oom_kill.c: "%s: Killed process %d (%s) total-vm:%lukB, anon-rss:%lukB, ..." (the
    # prefix is "Out of memory" or "Memory cgroup out of memory"); 4.x said "Killed process" too.
    _p("oom_kill", "Killed process", r"Killed process (?P<pid>\d+) \((?P<process>.*?)\)(?:.*?anon-rss:(?P<anon_rss_kb>\d+)kB)?"),
    # block/blk-mq.c blk_print_req_error: "%s error, dev %s, sector %llu op 0x%x:(%s) ..." with the
    # blk_status_to_str names; older "blk_update_request: I/O error, dev sda, sector 8".
    _p("io_error", ", sector ", r"\b(?P<error>I/O|critical medium|critical target|critical nexus|critical space allocation|recoverable transport|protection|timeout) error, dev " + _DEV + r", sector (?P<sector>\d+)"),
    # fs/buffer.c: "Buffer I/O error on dev %pg, logical block %llu, ..."; fs/ext4/page-io.c: "... on device %s, ...".
    _p("io_error", "Buffer I/O error on dev", r"^Buffer I/O error on dev(?:ice)? " + _DEV + r", logical block (?P<block>\d+)"),
    # fs/ext4/super.c ext4_handle_error: "Remounting filesystem read-only" (ext4_msg: "EXT4-fs (%s): ").
    _p("readonly_remount", "Remounting filesystem read-only", r"^(?P<fstype>EXT[234])-fs \((?P<device>[^)]+)\): Remounting filesystem read-only"),
    # fs/xfs/xfs_fsops.c xfs_do_force_shutdown: "%s (0x%x) detected at %pS (%s:%d).  Shutting down filesystem."
    _p("readonly_remount", "Shutting down filesystem", r"^(?P<fstype>XFS) \((?P<device>[^)]+)\): .*Shutting down filesystem"),
    # fs/btrfs/messages.c: "BTRFS info (device %s%s): forced readonly"
    _p("readonly_remount", "forced readonly", r"^(?P<fstype>BTRFS) \w+ \(device (?P<device>[^)\s]+)[^)]*\): forced readonly"),
    # fs/ext4/super.c: "EXT4-fs error (device %s): %s:%d: ..."
    _p("fs_error", "-fs error (device", r"^(?P<fstype>EXT[234])-fs error \(device (?P<device>[^)]+)\)"),
    # fs/ext4: "I/O error while writing superblock", "failed to convert unwritten extents to written
    # extents -- potential data loss!" (ext4_msg, KERN_CRIT and KERN_EMERG).
    _p("fs_error", "I/O error while writing superblock", r"^(?P<fstype>EXT[234])-fs \((?P<device>[^)]+)\): I/O error while writing superblock"),
    _p("fs_error", "potential data loss", r"^(?P<fstype>EXT[234])-fs \((?P<device>[^)]+)\): .*potential data loss"),
    # fs/jbd2/journal.c: "Aborting journal on device %s." and "JBD2: I/O error when updating journal
    # superblock for %s." / "JBD2: Error %d detected when ..."; the name is "<bdev>-<journal inode>".
    _p("fs_error", "Aborting journal on device", r"^Aborting journal on device (?P<device>\S+?)(?:-\d+)?\.$"),
    _p("fs_error", "when updating journal superblock", r"^JBD2: (?:I/O error|Error -?\d+ detected) when updating journal superblock for (?P<device>\S+?)(?:-\d+)?\.$"),
    # fs/xfs: "Metadata corruption detected at %pS, ...", "metadata I/O error in \"%pS\" at daddr ...",
    # "Metadata CRC error detected at ...", "Corruption detected. Unmount and run xfs_repair".
    _p("fs_error", "XFS (", r"^(?P<fstype>XFS) \((?P<device>[^)]+)\): (?:.*[Cc]orruption|metadata I/O error|Metadata CRC error)"),
    # fs/btrfs/messages.c: "BTRFS error (device %s%s): ...", "BTRFS critical (device ...)", and
    # __btrfs_handle_fs_error: "BTRFS: error (device %s%s) in %s:%d: errno=%d %s".
    _p("fs_error", "BTRFS", r"^(?P<fstype>BTRFS):? (?:error|critical) \(device (?P<device>[^)\s]+)"),
    # net/netfilter/nf_conntrack_core.c: "nf_conntrack: table full, dropping packet" (its pr_fmt
    # doubles the prefix on newer kernels: "nf_conntrack: nf_conntrack: table full, ...").
    _p("conntrack_full", "table full, dropping packet", r"nf_conntrack: table full, dropping packet"),
    # e1000e/ixgbe: netdev_info "NIC Link is Down" ("e1000e 0000:00:19.0 eth0: NIC Link is Down");
    # igb: "igb: %s NIC Link is Down"; e1000: "%s NIC Link is Down"; phylib: "Link is Down".
    _p("link_down", "ink is ", r"(?P<interface>[^\s:]+):? (?:NIC )?Link is [Dd]own"),
    # NVIDIA's kernel_rc.c (open-gpu-kernel-modules): "NVRM: Xid (PCI:%04x:%02x:%02x): %d, pid=%s,
    # name=%s, %s", pid '<unknown>' and name <unknown> when no process is to blame; a MIG GPU
    # adds " GPU-I:%02u GPU-CI:%02u" inside the parenthesis; drivers before ~460 printed
    # "NVRM: Xid (0000:01:00): 13, <detail>" without PCI: and without pid and name.
    _p("gpu_xid_critical", "NVRM: Xid", _XID.format(xid="|".join(map(str, XID_CRITICAL)))),
    _p("gpu_xid", "NVRM: Xid", _XID.format(xid=r"\d+")),
)

SIGNAL_KINDS: tuple[str, ...] = tuple(KINDS)

# lib/ratelimit.c ___ratelimit: "%s: %d callbacks suppressed" (the caller's name, or a
# subsystem's such as "EXT4-fs"): the kernel dropped that many of its own lines. It belongs to
# no report, and it is how an operator learns why an expected line is missing.
SUPPRESSED = re.compile(r"^(?P<source>\S+): (?P<count>\d+) callbacks suppressed$")


def classify(message: str) -> tuple[Pattern, dict[str, str]] | None:
    """The first pattern matching a kmsg message, with the labels it extracted."""
    for p in PATTERNS:
        labels = p.match(message)
        if labels is not None:
            return p, labels
    return None


def event_of(kind: str) -> tuple[str, str]:
    """(event type, level) for a signal kind, for the event log."""
    k = KINDS[kind]
    return k.event, k.level


# -- operators' own patterns ------------------------------------------------------------------
# Appended from config (`log_patterns`), after the catalogue above: a line the catalogue
# knows stays the catalogue's finding, so a user rule cannot rename a hung task.

CUSTOM = "custom"  # the Signal kind of every user-rule match; its event type travels in labels
CUSTOM_PREFIX = "Custom."
USER_LEVELS = (CRITICAL, WARN, INFO)
# Labels a user-rule signal sets itself; a named group may not take these names.
RESERVED_LABELS = ("type", "level", "rule", "source", "condition", "seq", "priority", "unit", "identifier")
# A rule's name is the tail of its event type: alert policies take `Custom.<name>` by this rule.
RULE_NAME = re.compile(r"^[A-Z][A-Za-z0-9]{0,63}$")
RULE_TYPES = ("temporary", "permanent")


# The checks of one rule, used by the settings model (diag/settings/sections.py's
# LogPattern). Each raises ValueError with the reason; the loader adds file, line and field.

def check_regex(value: str | None) -> str | None:
    """A regex that compiles and names no group after a label the service sets."""
    if value is not None:
        try:
            compiled = re.compile(value)
        except re.error as e:
            raise ValueError(f"regex does not compile: {e.msg} at position {e.pos}") from None
        taken = sorted(set(compiled.groupindex) & set(RESERVED_LABELS))
        if taken:
            raise ValueError(f"group name {taken[0]!r} is a label the service sets itself")
    return value


def check_source(value: str) -> str:
    if value not in ("kernel", "journal") and not value.startswith("/"):
        raise ValueError('"kernel", "journal" or an absolute path of a log file')
    return value


def check_clear(clear: str | None, rule_type: str | None) -> str | None:
    if clear is not None and rule_type != "permanent":
        raise ValueError("clear ends a condition: only a permanent rule has one")
    return clear


@dataclass(frozen=True, slots=True)
class UserRule:
    """One operator rule, node-problem-detector style: a regex, an event type, a level, and
    whether a match is a passing happening (temporary) or a lasting condition (permanent).

    `source` is "kernel" (/dev/kmsg), "journal" (systemd's journal), or a file's path.
    A permanent rule's condition holds until `clear` matches a line of the same source or the
    machine reboots: a log line can say a fault began, and only another line (or a new boot)
    can say it ended; the service cannot re-check a state it knows only by its wording.
    """

    name: str
    source: str
    regex: re.Pattern[str]
    level: str = WARN
    permanent: bool = False
    clear: re.Pattern[str] | None = None

    @property
    def event(self) -> str:
        return CUSTOM_PREFIX + self.name

    @classmethod
    def of(cls, name: str, source: str, pattern: str, level: str, rule_type: str, clear: str | None) -> "UserRule":
        """From a checked config entry (server or agent)."""
        return cls(name, source, re.compile(pattern), level, rule_type == "permanent",
                   re.compile(clear) if clear is not None else None)


def custom_event(labels: dict[str, str]) -> tuple[str, str, str]:
    """(event type, level, fold key) of a user-rule signal, from the labels it carries: an
    agent's rules are in its own config, so the server learns them only from the signal.
    A type outside `Custom.` is not believed, so a config cannot forge a kernel event."""
    etype = labels.get("type", "")
    if not etype.startswith(CUSTOM_PREFIX) or len(etype) <= len(CUSTOM_PREFIX):
        etype = CUSTOM_PREFIX + "Unnamed"
    level = labels.get("level", WARN)
    if level not in USER_LEVELS:
        level = WARN
    # A cleared condition is its own event, not one more count of the fault it ends.
    fold = "|".join((CUSTOM, etype, labels.get("source", ""), labels.get("condition", "")))
    return etype, level, fold
