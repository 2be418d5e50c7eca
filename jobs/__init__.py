"""Scheduled work: the weekly reports and discovery warnings, sent with aiosmtplib."""
