/** A moment as the reader's locale writes it, to the second. */
export function formatTime(date: Date | null | undefined): string {
  return date ? date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' }) : '—';
}

/** A duration in the largest units that say it: `3 d 4 h`, `12 min`, `40 s`. */
export function formatSeconds(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) return '—';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min${s % 60 ? ` ${s % 60} s` : ''}`;
  if (s < 86_400)
    return `${Math.floor(s / 3600)} h${Math.floor((s % 3600) / 60) ? ` ${Math.floor((s % 3600) / 60)} min` : ''}`;
  return `${Math.floor(s / 86_400)} d${Math.floor((s % 86_400) / 3600) ? ` ${Math.floor((s % 86_400) / 3600)} h` : ''}`;
}

/** How long ago `date` was, as a duration. */
export function formatSince(date: Date | null | undefined, now: number = Date.now()): string {
  return date ? formatSeconds(Math.max(0, (now - date.getTime()) / 1000)) : '—';
}

/** Bytes in binary units: `512 B`, `3.2 KiB`, `31.9 MiB`. */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

/** A build reason in words. */
export function formatReason(reason: string | null | undefined): string {
  switch (reason) {
    case 'task_manual_pause':
      return 'paused by hand';
    case 'task_auto_pause':
      return 'paused when idle';
    case 'task_resume':
      return 'resumed';
    case null:
    case undefined:
      return '—';
    default:
      return reason.replaceAll('_', ' ');
  }
}
