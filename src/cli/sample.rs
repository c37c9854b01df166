//! The sample configuration printed by `minisv echo-conf`.

/// A complete commented sample config: every section and option, commented out with its
/// default, and valid as it is (`minisv echo-conf > /etc/minisv.conf`).
pub fn echo_conf() -> &'static str {
    SAMPLE
}

const SAMPLE: &str = r#"; minisv configuration file (the same format as Supervisor's supervisord.conf).
;
; Lines starting with ';' or '#' are comments. A ';' or '#' after a space also starts a
; comment, so quote nothing and write "a;b" without spaces, or put a shell command that
; needs " ; " inside a script. Values may use %(here)s (the directory of this file),
; %(ENV_NAME)s (an environment variable) and, in program sections, %(program_name)s,
; %(process_num)d, %(group_name)s and %(host_node_name)s. Write %% for a literal %.
; Relative paths in [include] are relative to this file's directory.

[unix_http_server]
file=/tmp/minisv.sock        ; the control socket (minisv ctl talks to it)
;chmod=0700                  ; socket file mode (default 0700)
;chown=nobody:nogroup        ; socket owner, user or user:group
;username=user               ; username for the control interface (default: no auth)
;password=123                ; plain text, or {SHA} followed by the SHA-1 hex digest

;[inet_http_server]          ; the HTTP control interface (off unless this section is used)
;port=127.0.0.1:9001         ; host:port, or *:port for all interfaces
;username=user               ; default: no auth
;password=123                ; plain text, or {SHA} followed by the SHA-1 hex digest

[supervisord]
logfile=/tmp/minisv.log      ; main log file, or syslog (default $CWD/supervisord.log)
;logfile_maxbytes=50MB       ; rotate the main log at this size; 0 = never (default 50MB)
;logfile_backups=10          ; rotated main logs to keep; 0 = none (default 10)
;loglevel=info               ; critical, error, warn, info, debug, trace, blather (default info)
pidfile=/tmp/minisv.pid      ; pid file of the daemon (default $CWD/supervisord.pid)
;umask=022                   ; umask of the daemon, applied when daemonizing (default 022)
;nodaemon=false              ; stay in the foreground (default false)
;silent=false                ; with nodaemon, do not copy the log to stdout (default false)
;minfds=1024                 ; raise the open files limit to at least this (default 1024)
;minprocs=200                ; raise the process limit to at least this (default 200)
;nocleanup=false             ; keep AUTO child logs at start (default false)
;childlogdir=/tmp            ; directory of AUTO child logs (default $TMPDIR or /tmp)
;user=nobody                 ; drop privileges to this user at start (default: stay)
;directory=/tmp              ; chdir here when daemonizing (default: stay)
;strip_ansi=false            ; strip ANSI escapes from child output (default false)
;environment=KEY="value"     ; KEY="value",KEY2="value" added to every child (default none)
;environment_file=/etc/all.env ; minisv: dotenv files read at every spawn, under environment= (default none)
;credentials_directory=/run/minisv/credentials ; minisv: where credentials= are copied (default as shown, as root)
;identifier=supervisor       ; name of this instance in the RPC API (default supervisor)
;restart_limit=20            ; minisv: automatic restarts per second, all programs (default 0: no limit)
;exit_on=all-exited          ; minisv: exit when every program has ended for good (default never)
;state_file=/var/lib/minisv/state ; minisv: keep starts and stops by hand across restarts (default none)
;logfile_rotate=daily         ; minisv: also rotate hourly or daily (default size: at maxbytes only)
;logfile_compress=true       ; minisv: gzip rotated main logs (default false)
;log_format=json             ; minisv: text or json on the daemon's stdout (default text)

; The RPC interface that ctl and other Supervisor clients use. Keep this section.
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix:///tmp/minisv.sock ; the socket of [unix_http_server]
;serverurl=http://127.0.0.1:9001 ; or the address of [inet_http_server]
;username=chris              ; should match the server's username
;password=123                ; should match the server's password (plain text)
;prompt=minisv               ; prompt of the interactive shell (default minisv)
;history_file=~/.minisv_history ; readline history file (default none)

; A program. The command does not run through a shell: use sh -c '...' for pipes and
; redirections, and stdout_logfile= to capture output.

;[program:theprogramname]
;command=/bin/cat              ; the program and its arguments (required)
;process_name=%(program_name)s ; process name; needs %(process_num)s when numprocs > 1
;numprocs=1                    ; number of processes (default 1)
;numprocs_start=0              ; first process_num (default 0)
;directory=/tmp                ; chdir here before exec (default: stay)
;umask=022                     ; umask of the process (default: inherited)
;priority=999                  ; start order, low first; stop order, high first (default 999)
;autostart=true                ; start when the daemon starts (default true)
;startsecs=1                   ; seconds up to count as started (default 1)
;startretries=3                ; failed starts before FATAL (default 3)
;backoff_max=0                 ; minisv: longest wait in seconds between start attempts (default 0: none)
;restart_delay=0               ; minisv: seconds to wait before an automatic restart (default 0)
;fatal_retry=0                 ; minisv: start a FATAL process again after this many seconds (default 0: never)
;backoff_window=0              ; minisv: exits this soon after RUNNING grow the backoff (default 0: off)
;autorestart=unexpected        ; true, false or unexpected (default unexpected)
;exitcodes=0                   ; expected exit codes (default 0)
;stopsignal=TERM               ; signal to stop it: TERM, HUP, INT, QUIT, KILL, USR1, USR2 (default TERM)
;stopwaitsecs=10               ; seconds to wait before SIGKILL (default 10)
;stopasgroup=false             ; send the stop signal to the process group (default false)
;killasgroup=false             ; SIGKILL the process group (default: as stopasgroup)
;user=chrism                   ; run as this user (default: the daemon's user)
;redirect_stderr=false         ; send stderr to the stdout log (default false)
;stdout_logfile=AUTO           ; a path, AUTO or NONE (default AUTO, in childlogdir)
;stdout_logfile_maxbytes=50MB  ; rotate at this size; 0 = never (default 50MB)
;stdout_logfile_backups=10     ; rotated logs to keep (default 10)
;stdout_capture_maxbytes=0     ; capture mode buffer; 0 = off (default 0)
;stdout_events_enabled=false   ; emit PROCESS_LOG_STDOUT events (default false)
;stdout_syslog=false           ; also send to syslog (default false)
;stdout_logfile_rotate=daily   ; minisv: also rotate hourly or daily (default size)
;stdout_logfile_compress=true  ; minisv: gzip rotated logs, x.log.1.gz ... (default false)
;stderr_logfile=AUTO           ; a path, AUTO or NONE (default AUTO, in childlogdir)
;stderr_logfile_maxbytes=50MB  ; rotate at this size; 0 = never (default 50MB)
;stderr_logfile_backups=10     ; rotated logs to keep (default 10)
;stderr_capture_maxbytes=0     ; capture mode buffer; 0 = off (default 0)
;stderr_events_enabled=false   ; emit PROCESS_LOG_STDERR events (default false)
;stderr_syslog=false           ; also send to syslog (default false)
;stderr_logfile_rotate=daily   ; minisv: also rotate hourly or daily (default size)
;stderr_logfile_compress=true  ; minisv: gzip rotated logs, x.log.1.gz ... (default false)
;environment=A="1",B="2"       ; environment of the process (default none)
;environment_file=/etc/app.env ; minisv: dotenv files read at every spawn; environment= wins (default none)
;credentials=key:/etc/app/key  ; minisv: files copied to $CREDENTIALS_DIRECTORY at every spawn (default none)
;serverurl=AUTO                ; SUPERVISOR_SERVER_URL for the process (default AUTO)
;critical=false               ; minisv: exit with its status when it fails for good (default false)
;depends_on=db,cache           ; minisv: start after these are RUNNING, stop before them (default none)
;ready_fd=3                    ; minisv: RUNNING when the program writes a line on this fd (default none)
;ready_timeout=60              ; minisv: seconds it has to become ready with ready_fd (default 60)
;ready_notify=true             ; minisv: RUNNING when it sends READY=1 to NOTIFY_SOCKET (default false)
;watchdog_sec=30               ; minisv: restart it when its WATCHDOG=1 pings stop this long (default 0: none)
;memory_limit=512MB           ; minisv: restart it when its process tree uses more memory (default 0: none)
;schedule=30 2 * * *           ; minisv: start it at these times (cron; 6 fields: seconds first) (default none)
;schedule_overlap=skip         ; minisv: a run due while the last goes on: skip or queue (default skip)
;schedule_timezone=local       ; minisv: local or utc (default local)
;run_on_start=false            ; minisv: a scheduled program also runs at start (default false)
;rlimit_nofile=4096            ; minisv: limits set before exec: soft[:hard] or infinity (default none)
;rlimit_nproc=512              ; minisv: processes of its user (default none)
;rlimit_core=0                 ; minisv: core file size (default none)
;rlimit_as=2GB                 ; minisv: address space (default none)
;rlimit_cpu=3600               ; minisv: CPU seconds (default none)
;rlimit_fsize=1GB              ; minisv: file size (default none)
;nice=10                       ; minisv: nice value, -20 to 19 (default none)
;oom_score_adj=500             ; minisv: OOM killer adjustment, -1000 to 1000 (default none)
;cgroup=false                 ; minisv: a cgroup v2 of its own; leftovers killed at its end (default false)
;memory_max=512MB             ; minisv: cgroup memory.max, a size or max (default none)
;memory_high=400MB            ; minisv: cgroup memory.high, a size or max (default none)
;cpu_max=0.5                  ; minisv: cgroup cpu.max, in CPUs (default none)
;pids_max=100                 ; minisv: cgroup pids.max, a number or max (default none)
;ready_check=127.0.0.1:8080    ; minisv: RUNNING once this probe passes: host:port, http://127.0.0.1:8080/ or a command (default none)
;ready_check_interval=1        ; minisv: seconds between ready_check attempts (default 1)
;health_check=http://127.0.0.1:8080/healthz ; minisv: restart the program when this probe keeps failing (default none)
;health_check_interval=10      ; minisv: seconds between health checks (default 10)
;health_check_retries=3        ; minisv: failed health checks in a row before a restart (default 3)
;check_timeout=5               ; minisv: seconds before one probe attempt fails (default 5)
;listen=tcp://127.0.0.1:8080   ; minisv: sockets held across restarts, passed as fds 3+ with LISTEN_FDS (default none)
;log_prefix=[%(process_name)s] ; minisv: text before each line of output in the logs (default none)
;log_timestamps=false         ; minisv: a timestamp before each line in the logs (default false)

; An event listener pool: every [program:x] key, plus these.

;[eventlistener:theeventlistenername]
;command=/bin/eventlistener    ; the program and its arguments (required)
;events=EVENT                  ; event types to subscribe to (required)
;buffer_size=10                ; event queue size (default 10)
;result_handler=supervisor.dispatchers:default_handler ; or supervisor_stdlog:log_handler, supervisor_stdout:event_handler
;priority=-1                   ; listeners start first and stop last (default -1)
;redirect_stderr=false         ; must stay false for listeners

; A FastCGI program: every [program:x] key, plus these.

;[fcgi-program:thefcgiprogramname]
;command=/usr/bin/php-cgi      ; the program and its arguments (required)
;socket=unix:///tmp/%(program_name)s.sock ; or tcp://localhost:9002 (required)
;socket_backlog=128            ; listen backlog (default SOMAXCONN)
;socket_owner=chrism           ; unix socket owner, user or user:group (default: the process user)
;socket_mode=0700              ; unix socket mode (default 0700)

; A group of programs (each program then belongs to this group only).

;[group:thegroupname]
;programs=progname1,progname2  ; program or fcgi-program names (required)
;priority=999                  ; group priority (default 999)

; More config files, read after this one (one level; globs relative to this file's directory).

;[include]
;files=relative/directory/*.ini
"#;
