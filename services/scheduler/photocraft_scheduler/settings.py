from photocraft_common.settings import PlatformSettings


class SchedulerSettings(PlatformSettings):
    # The health server (/healthz, /readyz; photocraft_common.health); containers set host 0.0.0.0.
    host: str = "127.0.0.1"
    port: int = 9410
    max_attempts: int = 3  # per stage, the first included
    retry_base_s: float = 2.0  # backoff before the second attempt; doubles each time, with jitter
    retry_max_s: float = 60.0
    # A task out this long without a result counts as a failed attempt (its worker lost it).
    task_timeout_s: float = 3600.0
    tick_s: float = 0.5  # how often retries, claims and worker slots are looked at
    overdue_check_s: float = 30.0
    # False: plain FIFO, every stage straight to its topic when ready (the baseline of
    # bench/fairness.py; it lets a flood of free jobs delay paying ones).
    fair_share: bool = True
    # Seconds until a new partner's request topic is read (Kafka metadata refresh).
    partner_discovery_s: float = 10.0
    # False: ended jobs publish no UsageReport and this replica runs no ledger consumer, so nothing is recorded
    # in the usage ledger (an installation that does not meter usage; bench/ledger.py measures the ledger's
    # cost with it).
    usage_reports: bool = True
    # How long the ledger consumer retries a usage report whose recording fails (the database away)
    # before it goes to the dead-letter topic; meanwhile the ledger's partition waits, never a job.
    ledger_retry_s: float = 600.0
