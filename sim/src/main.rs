//! `sophos-cw-sim`: runs the Sophos Central and ConnectWise PSA simulators
//! until Ctrl-C, on a scenario file, the built-in demo, or a generated one.

use clap::Parser;
use sophos_cw_sim::{Scenario, Sim, generate};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "sophos-cw-sim",
    about = "Sophos Central Partner API and ConnectWise PSA simulators"
)]
struct Args {
    /// Scenario JSON file [default: the built-in demo scenario]
    #[arg(long, value_name = "FILE", conflicts_with = "generate")]
    scenario: Option<PathBuf>,
    /// Generate a large scenario instead: <tenants>x<products>, e.g. 2000x3
    #[arg(long, value_name = "TxP", value_parser = parse_size)]
    generate: Option<(usize, usize)>,
    /// Seed for --generate (same seed, same scenario)
    #[arg(long, default_value_t = 1, requires = "generate")]
    seed: u64,
    /// Where the Sophos simulator (identity service and partner API) listens
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9000")]
    sophos_addr: SocketAddr,
    /// Where the ConnectWise simulator listens
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9001")]
    cw_addr: SocketAddr,
    /// Write the scenario JSON to FILE and exit
    #[arg(long, value_name = "FILE")]
    write_scenario: Option<PathBuf>,
    /// Answer ConnectWise requests 429 while more than N are in flight, as a busy
    /// ConnectWise instance does (overrides the scenario's `throttle`)
    #[arg(long, value_name = "N")]
    cw_throttle_above: Option<u64>,
    /// The Retry-After (whole seconds) of those 429s
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 1,
        requires = "cw_throttle_above"
    )]
    cw_retry_after: u64,
}

fn parse_size(text: &str) -> Result<(usize, usize), String> {
    let max = generate::PRODUCTS.len();
    let (t, p) = text
        .split_once(['x', 'X'])
        .ok_or("expected <tenants>x<products>, e.g. 2000x3")?;
    let tenants = t
        .trim()
        .parse()
        .map_err(|_| format!("{t:?} is not a number of tenants"))?;
    let products: usize = p
        .trim()
        .parse()
        .map_err(|_| format!("{p:?} is not a number of products"))?;
    if !(1..=max).contains(&products) {
        return Err(format!("products must be between 1 and {max}"));
    }
    Ok((tenants, products))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let mut scenario = match load(&args) {
        Ok(scenario) => scenario,
        Err(msg) => return fail(&msg, 2),
    };
    if let Some(above_in_flight) = args.cw_throttle_above {
        scenario.connectwise.throttle = Some(sophos_cw_sim::Throttle {
            above_in_flight,
            retry_after: args.cw_retry_after,
        });
    }
    if let Some(path) = &args.write_scenario {
        let json = serde_json::to_string_pretty(&scenario).expect("a scenario serializes");
        return match std::fs::write(path, json + "\n") {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&format!("cannot write {}: {e}", path.display()), 1),
        };
    }
    let sim = match Sim::start_on(
        &args.sophos_addr.to_string(),
        &args.cw_addr.to_string(),
        scenario.clone(),
    )
    .await
    {
        Ok(sim) => sim,
        Err(e) => return fail(&format!("cannot listen: {e}"), 1),
    };
    println!("{}", banner(&sim, &scenario));
    if let Err(e) = tokio::signal::ctrl_c().await {
        return fail(&format!("cannot wait for Ctrl-C: {e}"), 1);
    }
    ExitCode::SUCCESS
}

fn load(args: &Args) -> Result<Scenario, String> {
    match (&args.scenario, args.generate) {
        (Some(path), _) => Scenario::from_file(path),
        (None, Some((tenants, products))) => Ok(generate::generate(tenants, products, args.seed)),
        (None, None) => Ok(Scenario::demo()),
    }
}

fn fail(msg: &str, code: u8) -> ExitCode {
    eprintln!("sophos-cw-sim: {msg}");
    ExitCode::from(code)
}

/// Where each API listens and curl commands that work against it as is.
fn banner(sim: &Sim, scenario: &Scenario) -> String {
    let (s, cw) = (&scenario.sophos, &scenario.connectwise);
    let (sophos, cw_url) = (sim.sophos_url(), sim.cw_url());
    let month = s
        .usage
        .keys()
        .next_back()
        .cloned()
        .unwrap_or_else(|| "2026-11".into());
    let (year, month) = month.split_once('-').unwrap_or(("2026", "11"));
    let api = format!("{cw_url}/{}apis/3.0", cw.codebase);
    // An agreement that has additions, if the scenario has one.
    let agreement = cw.additions.first().and_then(|a| a["agreementId"].as_i64());
    let agreement = agreement
        .or_else(|| cw.agreements.first().and_then(|a| a["id"].as_i64()))
        .unwrap_or(1);
    let auth = format!(
        "-u '{}+{}:{}' -H 'clientId: {}'",
        cw.company_id, cw.public_key, cw.private_key, cw.client_id
    );
    format!(
        "Sophos Central (identity + partner API): {sophos}
  client_id={} client_secret={} partner id={}
ConnectWise PSA: {api}
  companyId={} publicKey={} privateKey={} clientId={}
Control API: {sophos}/_sim/ and {cw_url}/_sim/  (state, scenario, faults, latency, clock, requests)

# Sophos: token, tenants, usage
TOKEN=$(curl -s {sophos}/api/v2/oauth2/token -d grant_type=client_credentials -d client_id={} -d client_secret={} -d scope=token | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/')
curl -s {sophos}/whoami/v1 -H \"Authorization: Bearer $TOKEN\"
curl -s '{sophos}/partner/v1/tenants?pageTotal=true' -H \"Authorization: Bearer $TOKEN\" -H 'X-Partner-ID: {}'
curl -s {sophos}/partner/v1/billing/usage/{year}/{month} -H \"Authorization: Bearer $TOKEN\" -H 'X-Partner-ID: {}'

# ConnectWise: company info, companies, additions of agreement {agreement}
curl -s {cw_url}/login/companyinfo/{}
curl -si {auth} '{api}/company/companies?pageSize=5&conditions=deletedFlag=false'
curl -s {auth} '{api}/finance/agreements/{agreement}/additions'

Ctrl-C stops.",
        s.client_id,
        s.client_secret,
        s.partner_id,
        cw.company_id,
        cw.public_key,
        cw.private_key,
        cw.client_id,
        s.client_id,
        s.client_secret,
        s.partner_id,
        s.partner_id,
        cw.company_id,
    )
}
