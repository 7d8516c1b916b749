//! Golden tests: the exact commands the shipped Skype for Business runbook gives each kind of
//! server. The three database variants are the seed procedure's step 11, word for word.

use baton_core::fleet::Fleet;
use baton_core::runbook::{Params, Runbook};

const RUNBOOK: &str = include_str!("../../../runbooks/sfb-server-update.toml");

const FLEET: &str = r#"
[fleet]
name = "golden"

[[pool]]
fqdn = "pool01.contoso.com"
edition = "enterprise"
sql_server = "sql01.contoso.com"

  [[pool.server]]
  fqdn = "be01.contoso.com"
  role = "backend"

  [[pool.server]]
  fqdn = "fe01.contoso.com"
  role = "frontend"

[[pool]]
fqdn = "pool02.contoso.com"
edition = "enterprise"
sql_server = "sql02.contoso.com"

  [[pool.server]]
  fqdn = "be02.contoso.com"
  role = "backend"
  collocated_databases = true

[[pool]]
fqdn = "se01.contoso.com"
edition = "standard"

  [[pool.server]]
  fqdn = "se01.contoso.com"
  role = "standard"

[[pool]]
fqdn = "edge01.contoso.com"
edition = "enterprise"

  [[pool.server]]
  fqdn = "edge01a.contoso.com"
  role = "edge"
"#;

const GATE_SERVICES: &str = r#"$down = @(Get-CsWindowsService | Where-Object { $_.Status -ne 'Running' }); if ($down.Count -gt 0) { $down | ForEach-Object { Write-Output "$($_.Name) is $($_.Status)" }; exit 1 }"#;

fn gate_databases(sql: &str) -> String {
    format!(
        "$r = @(Test-CsDatabase -ConfiguredDatabases -SqlServerFqdn {sql}); if ($r.Count -eq 0 -or @($r | Where-Object {{ -not $_.Succeed }}).Count -gt 0) {{ exit 1 }}"
    )
}

const INSTALL: &str = r"$p = Start-Process -FilePath 'C:\Updates\SkypeServerUpdateInstaller.exe' -ArgumentList '/silentmode' -Wait -PassThru; exit $p.ExitCode";

fn rendered(server: &str, params: &[(String, String)]) -> Vec<(String, String)> {
    let fleet = Fleet::from_toml("golden.toml", FLEET).expect("valid fleet");
    let runbook =
        Runbook::from_toml("runbooks/sfb-server-update.toml", RUNBOOK).expect("valid runbook");
    let params: Params = runbook
        .resolve_params(params, "--param")
        .expect("params resolve");
    let id = fleet.server_by_fqdn(server).expect("server in fleet");
    runbook
        .render_for(&fleet, id, &params)
        .expect("renders")
        .into_iter()
        .map(|s| (s.id, s.command))
        .collect()
}

fn expect(steps: &[(&str, &str)]) -> Vec<(String, String)> {
    steps
        .iter()
        .map(|(id, cmd)| (id.to_string(), cmd.to_string()))
        .collect()
}

#[test]
fn enterprise_back_end() {
    assert_eq!(
        rendered("be01.contoso.com", &[]),
        expect(&[
            ("stop-cs-services", "Stop-CsWindowsService"),
            ("stop-w3svc", "net stop w3svc"),
            ("install-update", INSTALL),
            ("stop-cs-services-gac", "Stop-CsWindowsService"),
            ("start-w3svc", "net start w3svc"),
            (
                "update-databases",
                "Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn sql01.contoso.com"
            ),
            ("gate-databases", &gate_databases("sql01.contoso.com")),
        ])
    );
}

#[test]
fn enterprise_back_end_with_collocated_databases() {
    assert_eq!(
        rendered("be02.contoso.com", &[]),
        expect(&[
            ("stop-cs-services", "Stop-CsWindowsService"),
            ("stop-w3svc", "net stop w3svc"),
            ("install-update", INSTALL),
            ("stop-cs-services-gac", "Stop-CsWindowsService"),
            ("start-w3svc", "net start w3svc"),
            (
                "update-databases",
                "Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn sql02.contoso.com -ExcludeCollocatedStores",
            ),
            ("gate-databases", &gate_databases("sql02.contoso.com")),
        ])
    );
}

#[test]
fn standard_edition_server() {
    assert_eq!(
        rendered("se01.contoso.com", &[]),
        expect(&[
            ("stop-cs-services", "Stop-CsWindowsService"),
            ("stop-w3svc", "net stop w3svc"),
            ("install-update", INSTALL),
            ("stop-cs-services-gac", "Stop-CsWindowsService"),
            ("start-w3svc", "net start w3svc"),
            (
                "update-databases",
                "Install-CsDatabase -Update -LocalDatabases"
            ),
            ("start-cs-services", "Start-CsWindowsService"),
            ("gate-services", GATE_SERVICES),
        ])
    );
}

#[test]
fn front_end_gets_the_generic_variant() {
    assert_eq!(
        rendered("fe01.contoso.com", &[]),
        expect(&[
            ("stop-cs-services", "Stop-CsWindowsService"),
            ("stop-w3svc", "net stop w3svc"),
            ("install-update", INSTALL),
            ("stop-cs-services-gac", "Stop-CsWindowsService"),
            ("start-w3svc", "net start w3svc"),
            ("start-cs-services", "Start-CsWindowsService"),
            ("gate-services", GATE_SERVICES),
        ])
    );
}

#[test]
fn edge_server_skips_iis_and_databases() {
    assert_eq!(
        rendered("edge01a.contoso.com", &[]),
        expect(&[
            ("stop-cs-services", "Stop-CsWindowsService"),
            ("install-update", INSTALL),
            ("stop-cs-services-gac", "Stop-CsWindowsService"),
            ("start-cs-services", "Start-CsWindowsService"),
            ("gate-services", GATE_SERVICES),
        ])
    );
}

#[test]
fn package_path_is_a_parameter() {
    let steps = rendered(
        "be01.contoso.com",
        &[(
            "package_path".into(),
            r"D:\CU\2024-09\SkypeServerUpdateInstaller.exe".into(),
        )],
    );
    assert_eq!(
        steps[2].1,
        r"$p = Start-Process -FilePath 'D:\CU\2024-09\SkypeServerUpdateInstaller.exe' -ArgumentList '/silentmode' -Wait -PassThru; exit $p.ExitCode"
    );
}
