<#
.SYNOPSIS
    Installs baton-worker.exe on this Windows server: it starts at boot, runs as SYSTEM (admin
    rights: the runbook's steps stop services and install updates), comes back after a crash,
    and keeps its journal in %ProgramData%\Baton\worker.

.DESCRIPTION
    Why a scheduled task and not a Windows service: baton-worker does not implement the Service
    Control Manager protocol (it never calls StartServiceCtrlDispatcher), so a service created
    with sc.exe or New-Service on the bare exe is killed by the SCM after 30 seconds with error
    1053. A wrapper (WinSW, NSSM) would fix that, but is a third-party download to approve and
    to keep patched on every server. Task Scheduler ships with Windows and does what is needed:

    - Trigger "at startup", principal SYSTEM with the highest run level: starts at boot, before
      anyone logs on, with the rights to stop the Skype for Business services and to install
      updates.
    - Trigger "every minute" (daily, repeated every minute for 24 hours) with "do not start a
      new instance" (MultipleInstances IgnoreNew): while the worker runs it does nothing; after
      a crash it starts the worker again within a minute. Task Scheduler's own "restart on
      failure" (RestartCount/RestartInterval, also set) only covers a start that fails, not a
      process that exits later (MS-TSCH 2.5.4.2), hence this trigger. The restarted worker reads
      its journal and the controller resumes its assignment (docs/operations.md).
    - No execution time limit (the default would end the worker after 72 hours), priority 4
      (normal: the default 7 would run the steps' installers below normal priority), no
      conditions on batteries, idle or network.

    What this does NOT give (limits of baton-worker itself, see docs/operations.md):
    - No clean stop. The worker stops cleanly on Ctrl-C only; Stop-ScheduledTask terminates its
      process, so its last spans are lost, and it cannot end the step it was running (a
      powershell.exe child, which Windows does not end with its parent). This script therefore
      refuses to stop a worker that is running a step unless -Force is given, and then ends the
      step's processes too.
    - Logs: Task Scheduler keeps no stderr, so the worker writes StateDir\worker.log
      (--log-file; moved to worker.log.1 at start once past 10 MB). What happened is also in
      the controller (`baton status`, `baton events`) and in the journal
      (StateDir\journal.jsonl).

    Re-running the script replaces the task (new settings take effect at once: a running
    worker is stopped and started again). The binary is not copied: put baton-worker.exe at
    -BinaryPath first. Undo with uninstall-worker.ps1.

    `cargo test --test deploy_files` checks that every --flag this script passes is one
    baton-worker accepts. The script itself has not been run by that test (no PowerShell there).

.PARAMETER ControllerUrl
    The controller's gRPC address, http://HOST:PORT (plain http: the worker has no TLS yet).

.PARAMETER Fqdn
    This server's name exactly as the fleet file writes it. Default: the machine's FQDN (host
    name and primary DNS suffix, else what DNS says for this host). Check it against the fleet.

.PARAMETER BinaryPath
    Where baton-worker.exe is. Default: %ProgramFiles%\Baton\baton-worker.exe. It runs as
    SYSTEM: keep it in a folder only administrators can write to.

.PARAMETER StateDir
    The worker's journal folder. Default: %ProgramData%\Baton\worker (the worker's own default
    on Windows). Created, and restricted to SYSTEM and Administrators.

.PARAMETER LogFormat
    text or json, of StateDir\worker.log.

.PARAMETER OtlpEndpoint
    Optional OTLP/gRPC collector, e.g. http://collector.contoso.com:4317. A scheduled task has
    no environment of its own, so this sets the machine-wide variable
    OTEL_EXPORTER_OTLP_ENDPOINT (every process started afterwards sees it).

.PARAMETER TlsCa
    With an https:// -ControllerUrl: the CA (PEM) that signed the controller's certificate.

.PARAMETER TlsCert
    This worker's certificate (PEM), when the controller requires client certificates: it must
    be valid for -Fqdn. Give -TlsKey with it. Keep both where only SYSTEM and Administrators
    can read them (the state folder, say).

.PARAMETER TlsKey
    The private key (PEM) of -TlsCert.

.PARAMETER Force
    Replace the task even if the worker is running a step (the step is ended).

.EXAMPLE
    PS> .\install-worker.ps1 -ControllerUrl http://baton.contoso.com:7411

.EXAMPLE
    PS> .\install-worker.ps1 -ControllerUrl http://10.0.0.5:7411 -Fqdn be01.emea.contoso.com -OtlpEndpoint http://collector.contoso.com:4317
#>
#Requires -Version 4.0
#Requires -RunAsAdministrator
#Requires -Modules ScheduledTasks
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [string] $ControllerUrl,

    [string] $Fqdn,

    [string] $BinaryPath = (Join-Path $env:ProgramFiles 'Baton\baton-worker.exe'),

    [string] $StateDir = (Join-Path $env:ProgramData 'Baton\worker'),

    [ValidateSet('text', 'json')]
    [string] $LogFormat = 'text',

    [string] $OtlpEndpoint,

    [string] $TlsCa,

    [string] $TlsCert,

    [string] $TlsKey,

    [switch] $Force
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

# The same names in uninstall-worker.ps1.
$TaskName = 'baton-worker'
$TaskPath = '\Baton\'

# --- Helpers --------------------------------------------------------------------------------

# Runs a program; returns its exit code and its output (stdout and stderr as text). What it
# writes on stderr must not become a terminating error, whatever the host makes of it.
function Invoke-Native {
    param([string] $FilePath, [string[]] $Arguments)
    $ErrorActionPreference = 'Continue'
    $output = & $FilePath @Arguments 2>&1 | ForEach-Object { "$_" }
    return [pscustomobject]@{ ExitCode = $LASTEXITCODE; Output = ($output -join [Environment]::NewLine) }
}

# One argument of a Windows command line (the task's action is one string). Quotes are refused
# by the validation below, so only spaces need quoting, and then backslashes that end the
# argument must be doubled so that they do not escape the closing quote.
function ConvertTo-CommandLineArgument {
    param([string] $Value)
    if ($Value -ne '' -and $Value -notmatch '\s') {
        return $Value
    }
    $trailing = [regex]::Match($Value, '\\*$').Value
    return '"' + $Value + $trailing + '"'
}

# The machine's FQDN: host name plus primary DNS suffix (no network needed), else the name DNS
# returns for this host.
function Get-MachineFqdn {
    $properties = [System.Net.NetworkInformation.IPGlobalProperties]::GetIPGlobalProperties()
    if (-not [string]::IsNullOrEmpty($properties.DomainName)) {
        return '{0}.{1}' -f $properties.HostName, $properties.DomainName
    }
    try {
        return [System.Net.Dns]::GetHostEntry([string]::Empty).HostName
    } catch {
        return $env:COMPUTERNAME
    }
}

# Every descendant process of these processes (Name, ProcessId): a running step's
# powershell.exe and what it started, and the console host (conhost.exe) Windows gives any
# console program, the worker included.
function Get-DescendantProcess {
    param([int[]] $ParentId)
    $all = @(Get-CimInstance -ClassName Win32_Process | Select-Object Name, ProcessId, ParentProcessId)
    $found = @()
    $frontier = @($ParentId)
    while ($frontier.Count -gt 0) {
        $children = @($all | Where-Object {
                $frontier -contains $_.ParentProcessId -and @($found | ForEach-Object { $_.ProcessId }) -notcontains $_.ProcessId
            })
        $found += $children
        $frontier = @($children | ForEach-Object { [int]$_.ProcessId })
    }
    return $found
}

# Stops the installed worker, if any: disables the task first (its every-minute trigger would
# start it again), refuses to cut off a running step unless -Force, and ends the step's
# processes too (the terminated worker cannot, and Windows does not end children with it).
function Stop-InstalledWorker {
    $task = Get-ScheduledTask -TaskName $TaskName -TaskPath $TaskPath -ErrorAction SilentlyContinue
    if ($null -eq $task) {
        return
    }
    $exe = $task.Actions[0].Execute
    $workers = @(Get-CimInstance -ClassName Win32_Process -Filter "Name = 'baton-worker.exe'" |
        Where-Object { $_.ExecutablePath -and ($_.ExecutablePath -eq $exe) } |
        ForEach-Object { [int]$_.ProcessId })
    $descendants = @()
    if ($workers.Count -gt 0) {
        $descendants = @(Get-DescendantProcess -ParentId $workers)
    }
    # A step is running if the worker has a child other than its console host.
    $steps = @($descendants | Where-Object { $_.Name -ne 'conhost.exe' } | ForEach-Object { [int]$_.ProcessId })
    if ($steps.Count -gt 0 -and -not $Force) {
        throw ("baton-worker (process {0}) is running a step (processes {1}): stopping it now would cut that step off. " +
            "Wait until this server is out of maintenance (baton status), or run again with -Force.") -f ($workers -join ', '), ($steps -join ', ')
    }
    Write-Host "Stopping the scheduled task $TaskPath$TaskName"
    $task | Disable-ScheduledTask | Out-Null
    $task | Stop-ScheduledTask
    foreach ($id in @($workers + @($descendants | ForEach-Object { [int]$_.ProcessId }))) {
        Stop-Process -Id $id -Force -ErrorAction SilentlyContinue
    }
    if ($workers.Count -gt 0) {
        Wait-Process -Id $workers -Timeout 30 -ErrorAction SilentlyContinue
    }
}

# --- Validate everything before changing anything -------------------------------------------

if (-not (Test-Path -LiteralPath $BinaryPath -PathType Leaf)) {
    throw "no baton-worker.exe at '$BinaryPath': copy it there first, or pass -BinaryPath"
}
$BinaryPath = (Resolve-Path -LiteralPath $BinaryPath).ProviderPath
if (-not $BinaryPath.StartsWith($env:ProgramFiles, [StringComparison]::OrdinalIgnoreCase)) {
    Write-Warning "$BinaryPath will run as SYSTEM: make sure only administrators can replace it."
}

$uri = $null
if (-not [Uri]::TryCreate($ControllerUrl, [UriKind]::Absolute, [ref] $uri) -or
    $uri.Scheme -ne 'http' -or [string]::IsNullOrEmpty($uri.Host) -or
    $ControllerUrl -notmatch ':\d+/?$') {
    throw "-ControllerUrl '$ControllerUrl' is not http://HOST:PORT (e.g. http://baton.contoso.com:7411; the worker has no TLS yet)"
}

if ([string]::IsNullOrWhiteSpace($Fqdn)) {
    $Fqdn = Get-MachineFqdn
    if ($Fqdn -notmatch '^[^.\s]+(\.[^.\s]+)+$') {
        throw "cannot tell this server's FQDN (found '$Fqdn'): pass -Fqdn exactly as the fleet file writes it"
    }
    Write-Host "Using -Fqdn $Fqdn (this machine's FQDN): it must be the name the fleet file uses."
}
if ($Fqdn -match '\s') {
    throw "-Fqdn '$Fqdn' contains white space"
}

if ($OtlpEndpoint) {
    $otlp = $null
    if (-not [Uri]::TryCreate($OtlpEndpoint, [UriKind]::Absolute, [ref] $otlp) -or
        @('http', 'https') -notcontains $otlp.Scheme) {
        throw "-OtlpEndpoint '$OtlpEndpoint' is not an http:// or https:// URL"
    }
}

if (-not [System.IO.Path]::IsPathRooted($StateDir)) {
    throw "-StateDir '$StateDir' must be an absolute path"
}
$StateDir = [System.IO.Path]::GetFullPath($StateDir)
if ($StateDir.Length -gt 3) {
    $StateDir = $StateDir.TrimEnd('\')
}

foreach ($value in @($ControllerUrl, $Fqdn, $StateDir, $TlsCa, $TlsCert, $TlsKey)) {
    if ($value -match '"') {
        throw "no double quotes, please: $value"
    }
}

# A scheduled task keeps no stderr: the lines go to a file in the state folder.
$LogFile = Join-Path $StateDir 'worker.log'
$workerArgs = @(
    '--controller', $ControllerUrl,
    '--fqdn', $Fqdn,
    '--state-dir', $StateDir,
    '--log-format', $LogFormat,
    '--log-file', $LogFile
)
# TLS files: the flags are checked below (--help); that the files are readable PEM and agree
# with the URL the worker checks when it starts (exit code 2, naming the flag and the file).
if ($TlsCa) { $workerArgs += @('--tls-ca', [System.IO.Path]::GetFullPath($TlsCa)) }
if ($TlsCert) { $workerArgs += @('--tls-cert', [System.IO.Path]::GetFullPath($TlsCert)) }
if ($TlsKey) { $workerArgs += @('--tls-key', [System.IO.Path]::GetFullPath($TlsKey)) }

# The binary runs here (missing runtime DLL, wrong architecture), and accepts these arguments:
# with --help last it checks every flag and value before it and then only prints its help.
$version = Invoke-Native -FilePath $BinaryPath -Arguments @('--version')
if ($version.ExitCode -ne 0) {
    throw "'$BinaryPath --version' failed (exit code $($version.ExitCode)): $($version.Output)"
}
$check = Invoke-Native -FilePath $BinaryPath -Arguments ($workerArgs + '--help')
if ($check.ExitCode -ne 0) {
    throw "baton-worker refuses these settings: $($check.Output)"
}

# --- Install --------------------------------------------------------------------------------

Stop-InstalledWorker

# The journal: kept across restarts, upgrades and re-installs; only SYSTEM and administrators
# may touch it (a tampered journal would mislead the controller about where a step stopped).
New-Item -ItemType Directory -Path $StateDir -Force | Out-Null
$acl = Invoke-Native -FilePath 'icacls.exe' -Arguments @($StateDir, '/inheritance:r', '/grant:r', '*S-1-5-18:(OI)(CI)F', '*S-1-5-32-544:(OI)(CI)F')
if ($acl.ExitCode -ne 0) {
    throw "icacls could not restrict '$StateDir' (exit code $($acl.ExitCode)): $($acl.Output)"
}

if ($OtlpEndpoint) {
    [Environment]::SetEnvironmentVariable('OTEL_EXPORTER_OTLP_ENDPOINT', $OtlpEndpoint, 'Machine')
    Write-Host "Set the machine-wide OTEL_EXPORTER_OTLP_ENDPOINT=$OtlpEndpoint"
}

$argumentLine = ($workerArgs | ForEach-Object { ConvertTo-CommandLineArgument $_ }) -join ' '
$action = New-ScheduledTaskAction -Execute $BinaryPath -Argument $argumentLine -WorkingDirectory $StateDir

$atStartup = New-ScheduledTaskTrigger -AtStartup
# Every minute, for ever: a daily trigger repeated every minute for a day (explicit values that
# every Windows Server version accepts, unlike an unbounded repetition).
$everyMinute = New-ScheduledTaskTrigger -Daily -At '00:00'
$everyMinute.Repetition = (New-ScheduledTaskTrigger -Once -At '00:00' `
        -RepetitionInterval (New-TimeSpan -Minutes 1) -RepetitionDuration (New-TimeSpan -Days 1)).Repetition

$principal = New-ScheduledTaskPrincipal -UserId 'SYSTEM' -LogonType ServiceAccount -RunLevel Highest

$settings = New-ScheduledTaskSettingsSet `
    -ExecutionTimeLimit ([TimeSpan]::Zero) `
    -RestartCount 3 -RestartInterval (New-TimeSpan -Minutes 1) `
    -MultipleInstances IgnoreNew `
    -StartWhenAvailable `
    -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries -DontStopOnIdleEnd `
    -Priority 4

Register-ScheduledTask -TaskName $TaskName -TaskPath $TaskPath `
    -Action $action -Trigger @($atStartup, $everyMinute) -Principal $principal -Settings $settings `
    -Description 'Baton worker: runs this server''s runbook steps for the Baton controller (deploy/windows/install-worker.ps1)' `
    -Force | Out-Null
Write-Host "Registered the scheduled task $TaskPath$($TaskName): $BinaryPath $argumentLine"

Start-ScheduledTask -TaskName $TaskName -TaskPath $TaskPath
Start-Sleep -Seconds 5
$info = Get-ScheduledTaskInfo -TaskName $TaskName -TaskPath $TaskPath
$state = (Get-ScheduledTask -TaskName $TaskName -TaskPath $TaskPath).State
if ($state -ne 'Running') {
    throw "the worker is not running (task state $state, last result $($info.LastTaskResult)): run '$BinaryPath $argumentLine' in a console to see why"
}
Write-Host "baton-worker is running as $Fqdn. On the controller, 'baton servers' should list it as connected."
