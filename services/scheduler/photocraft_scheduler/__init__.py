"""The scheduler: from submitted jobs to stage tasks, and from task results to job events."""
