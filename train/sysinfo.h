/* sysinfo.h — the few readings of the running process the commands report:
 * a monotonic clock, and resident memory (peak and current). */
#ifndef LC_SYSINFO_H
#define LC_SYSINFO_H

/* Seconds from an arbitrary origin, monotonic. */
double lc_now_s(void);
/* Peak resident set size of this process so far, bytes (getrusage). */
double lc_peak_rss_bytes(void);
/* Resident set size now, bytes (/proc/self/statm; 0 when unknown). */
double lc_current_rss_bytes(void);

#endif
