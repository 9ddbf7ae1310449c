"""Client library for the video translation server: create jobs, learn when they end."""

from .models import Event, EventType, Job, JobError, JobStatus, Stage

__all__ = ["Event", "EventType", "Job", "JobError", "JobStatus", "Stage"]
