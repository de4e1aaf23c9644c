//! Command line: `portcullis [run] -c FILE [-d] [-u]`, `check`, `reload` and `upgrade`.

pub const DEFAULT_CONFIG: &str = "/etc/portcullis/portcullis.yaml";

pub const USAGE: &str = "\
usage:
  portcullis [run] [-c FILE] [-d|--daemon] [-u|--upgrade]   run the gateway
  portcullis check [-c FILE]     validate a configuration and exit
  portcullis reload [-c FILE]    validate, then have the running gateway reload it live
                                 (admin POST /reload, or SIGHUP to the pid file)
  portcullis upgrade [-c FILE]   validate, start a new process that takes over the listeners,
                                 and only then let the old process hand over and drain
  portcullis demo-upstreams [PORT...]   small demo services for the example configuration
                                 (default ports 9001-9004; a gRPC service on 9005)
  portcullis route [-c FILE] 'METHOD URL' [-H 'Name: value']...
                                 what the gateway would do with that request (route, auth,
                                 limits, version, upstream and its path), sending nothing
  portcullis route [-c FILE] --test FILE
                                 check a file of expected routings; exit 1 if one differs
  portcullis hash-key             read an API key on stdin, print the sha256 for keys_file
  portcullis demo-cert DIR        a local CA and a certificate for localhost in DIR (demo-ca.pem,
                                 demo.pem, demo.key), for trying HTTPS; kept if still valid
  portcullis --version | --help

  -c, --config FILE   the Portcullis YAML (default /etc/portcullis/portcullis.yaml)
  -d, --daemon        detach and run in the background (writes server.pid_file)
  -u, --upgrade       take over the listeners of a running instance (graceful upgrade)
  --upgrade-sock PATH with -u: receive them through PATH instead of server.upgrade_sock
                      (`portcullis upgrade` passes the socket the running process uses)

exit status: 0 done, 1 refused or failed, 2 bad command line,
             3 reload applied except process-level settings (they need an upgrade)
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run {
        config: String,
        daemon: bool,
        upgrade: bool,
        /// With `upgrade`: receive the listeners through this socket instead of
        /// `server.upgrade_sock` (the one the running process sends to).
        upgrade_sock: Option<String>,
    },
    Check {
        config: String,
    },
    Reload {
        config: String,
    },
    Upgrade {
        config: String,
    },
    DemoUpstreams {
        ports: Vec<u16>,
    },
    HashKey,
    DemoCert {
        dir: String,
    },
    /// `route -c FILE 'GET https://host/path' [-H 'Name: value']...` or `route --test FILE`.
    Route {
        config: String,
        request: Option<String>,
        headers: Vec<String>,
        tests: Option<String>,
    },
    Version,
    Help,
}

pub fn parse(args: &[String]) -> Result<Command, String> {
    if args.first().map(String::as_str) == Some("hash-key") {
        return match args.len() {
            1 => Ok(Command::HashKey),
            _ => Err("hash-key reads the key on stdin and takes no arguments".into()),
        };
    }
    if args.first().map(String::as_str) == Some("demo-cert") {
        return match args {
            [_, dir] => Ok(Command::DemoCert { dir: dir.clone() }),
            _ => Err("demo-cert takes one directory".into()),
        };
    }
    if args.first().map(String::as_str) == Some("demo-upstreams") {
        let ports = args[1..]
            .iter()
            .map(|p| {
                p.parse::<u16>()
                    .map_err(|_| format!("`{p}` is not a port number"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Command::DemoUpstreams { ports });
    }
    if args.first().map(String::as_str) == Some("route") {
        return parse_route(&args[1..]);
    }
    let mut it = args.iter().peekable();
    let sub = match it.peek().map(|s| s.as_str()) {
        Some("run" | "check" | "reload" | "upgrade") => it.next().map(|s| s.as_str()),
        _ => None,
    };
    let mut config = DEFAULT_CONFIG.to_string();
    let (mut daemon, mut upgrade) = (false, false);
    let mut upgrade_sock = None;
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-c" | "--config" | "--conf" => {
                config = it
                    .next()
                    .ok_or_else(|| format!("{arg} needs a file name"))?
                    .clone();
            }
            "-d" | "--daemon" => daemon = true,
            "-u" | "--upgrade" => upgrade = true,
            "--upgrade-sock" => {
                upgrade_sock = Some(
                    it.next()
                        .ok_or_else(|| format!("{arg} needs a socket path"))?
                        .clone(),
                );
            }
            "-V" | "--version" => return Ok(Command::Version),
            "-h" | "--help" => return Ok(Command::Help),
            other => match other.strip_prefix("--config=") {
                Some(v) => config = v.to_string(),
                None => return Err(format!("unknown argument `{other}`")),
            },
        }
    }
    match sub {
        Some(sub @ ("check" | "reload" | "upgrade")) if daemon || upgrade || upgrade_sock.is_some() => {
            Err(format!("{sub} takes only -c FILE"))
        }
        _ if upgrade_sock.is_some() && !upgrade => Err("--upgrade-sock goes with --upgrade".into()),
        Some("check") => Ok(Command::Check { config }),
        Some("reload") => Ok(Command::Reload { config }),
        Some("upgrade") => Ok(Command::Upgrade { config }),
        _ => Ok(Command::Run {
            config,
            daemon,
            upgrade,
            upgrade_sock,
        }),
    }
}

fn parse_route(args: &[String]) -> Result<Command, String> {
    let mut config = DEFAULT_CONFIG.to_string();
    let (mut request, mut tests, mut headers) = (None, None, Vec::new());
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "-c" | "--config" => config = value()?,
            "-H" | "--header" => headers.push(value()?),
            "--test" => tests = Some(value()?),
            other if other.starts_with('-') => return Err(format!("unknown argument `{other}`")),
            other if request.is_none() => request = Some(other.to_string()),
            other => return Err(format!("one request at a time (`{other}` is a second one)")),
        }
    }
    match (&request, &tests) {
        (None, None) => Err("route needs a request ('GET https://host/path') or --test FILE".into()),
        (Some(_), Some(_)) => Err("give a request or --test FILE, not both".into()),
        _ => Ok(Command::Route {
            config,
            request,
            headers,
            tests,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_forms() {
        assert_eq!(
            parse(&args("-c a.yaml -d")).unwrap(),
            Command::Run {
                config: "a.yaml".into(),
                daemon: true,
                upgrade: false,
                upgrade_sock: None,
            }
        );
        assert_eq!(
            parse(&args("run -u --config=b.yaml")).unwrap(),
            Command::Run {
                config: "b.yaml".into(),
                daemon: false,
                upgrade: true,
                upgrade_sock: None,
            }
        );
        assert_eq!(
            parse(&args("run -u -d --upgrade-sock /run/x.sock -c c")).unwrap(),
            Command::Run {
                config: "c".into(),
                daemon: true,
                upgrade: true,
                upgrade_sock: Some("/run/x.sock".into()),
            }
        );
        assert!(parse(&args("run --upgrade-sock /x")).is_err(), "needs -u");
        assert_eq!(
            parse(&args("check -c x")).unwrap(),
            Command::Check { config: "x".into() }
        );
        assert_eq!(
            parse(&args("reload -c y")).unwrap(),
            Command::Reload { config: "y".into() }
        );
        assert_eq!(
            parse(&args("upgrade")).unwrap(),
            Command::Upgrade {
                config: DEFAULT_CONFIG.into()
            }
        );
        assert!(parse(&args("check -d")).is_err());
        assert_eq!(
            parse(&args("demo-upstreams 7 8")).unwrap(),
            Command::DemoUpstreams { ports: vec![7, 8] }
        );
        assert!(parse(&args("demo-upstreams x")).is_err());
        assert!(parse(&args("upgrade -u")).is_err());
        assert!(parse(&args("-x")).is_err());
        assert!(parse(&args("-c")).is_err());
    }
}
