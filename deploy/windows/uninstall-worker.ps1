<#
.SYNOPSIS
    Removes the baton-worker scheduled task that install-worker.ps1 created.

.DESCRIPTION
    Disables the task (its every-minute trigger would start the worker again), stops the worker
    and, with -Force, the step it is running, then unregisters the task. Refuses while the worker
    is running a step, unless -Force: the server is then in maintenance, and cutting the step off
    leaves it for an operator (`baton resolve`).

    Keeps baton-worker.exe and, unless -RemoveState, the journal folder: a worker installed again
    reads its journal back and the controller resumes where it stopped. Also keeps the
    machine-wide OTEL_EXPORTER_OTLP_ENDPOINT that install-worker.ps1 -OtlpEndpoint may have set,
    since other programs may use it; remove it with
    [Environment]::SetEnvironmentVariable('OTEL_EXPORTER_OTLP_ENDPOINT', $null, 'Machine').

    Like install-worker.ps1, not run by any test here (no PowerShell); `cargo test --test
    deploy_files` checks that both scripts name the same task.

.PARAMETER StateDir
    The journal folder to delete with -RemoveState. Default: the --state-dir of the installed
    task, else %ProgramData%\Baton\worker.

.PARAMETER RemoveState
    Also delete the journal folder. Only when this server is not part of a running rollout.

.PARAMETER Force
    Stop the worker even while it runs a step (the step's processes are ended too).

.EXAMPLE
    PS> .\uninstall-worker.ps1
#>
#Requires -Version 4.0
#Requires -RunAsAdministrator
#Requires -Modules ScheduledTasks
[CmdletBinding()]
param(
    [string] $StateDir,

    [switch] $RemoveState,

    [switch] $Force
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

# The same names in install-worker.ps1.
$TaskName = 'baton-worker'
$TaskPath = '\Baton\'

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

$task = Get-ScheduledTask -TaskName $TaskName -TaskPath $TaskPath -ErrorAction SilentlyContinue
if ($null -eq $task) {
    Write-Host "No scheduled task $TaskPath$($TaskName): nothing to stop."
} else {
    $exe = $task.Actions[0].Execute
    $arguments = [string]$task.Actions[0].Arguments
    if ([string]::IsNullOrEmpty($StateDir) -and $arguments -match '--state-dir\s+("([^"]*)"|(\S+))') {
        $StateDir = if ($Matches[2]) { $Matches[2] } else { $Matches[3] }
    }

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
        throw ("baton-worker (process {0}) is running a step (processes {1}): removing it now would cut that step off. " +
            "Wait until this server is out of maintenance (baton status), or run again with -Force.") -f ($workers -join ', '), ($steps -join ', ')
    }

    # Disabled first, or the every-minute trigger could start it again in between.
    $task | Disable-ScheduledTask | Out-Null
    $task | Stop-ScheduledTask
    foreach ($id in @($workers + @($descendants | ForEach-Object { [int]$_.ProcessId }))) {
        Stop-Process -Id $id -Force -ErrorAction SilentlyContinue
    }
    if ($workers.Count -gt 0) {
        Wait-Process -Id $workers -Timeout 30 -ErrorAction SilentlyContinue
    }
    Unregister-ScheduledTask -TaskName $TaskName -TaskPath $TaskPath -Confirm:$false
    Write-Host "Removed the scheduled task $TaskPath$TaskName (kept $exe)."

    # The \Baton\ folder of Task Scheduler, if nothing else is in it.
    try {
        $scheduler = New-Object -ComObject 'Schedule.Service'
        $scheduler.Connect()
        $folder = $scheduler.GetFolder($TaskPath.TrimEnd('\'))
        if ($folder.GetTasks(1).Count -eq 0 -and $folder.GetFolders(0).Count -eq 0) {
            $scheduler.GetFolder('\').DeleteFolder($folder.Name, 0)
        }
    } catch {
        Write-Verbose "Task Scheduler folder $TaskPath kept: $_"
    }
}

if ([string]::IsNullOrEmpty($StateDir)) {
    $StateDir = Join-Path $env:ProgramData 'Baton\worker'
}
if ($RemoveState) {
    if (Test-Path -LiteralPath $StateDir) {
        Remove-Item -LiteralPath $StateDir -Recurse -Force
        Write-Host "Deleted the journal folder $StateDir."
    }
} elseif (Test-Path -LiteralPath $StateDir) {
    Write-Host "Kept the journal folder $StateDir (-RemoveState deletes it)."
}
