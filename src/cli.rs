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
                                 (default ports 9001-9004)
  portcullis hash-key             read an API key on stdin, print the sha256 for keys_file
  portcullis --version | --help

  -c, --config FILE   the Portcullis YAML (default /etc/portcullis/portcullis.yaml)
  -d, --daemon        detach and run in the background (writes server.pid_file)
  -u, --upgrade       take over the listeners of a running instance (graceful upgrade)
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run {
        config: String,
        daemon: bool,
        upgrade: bool,
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
    let mut it = args.iter().peekable();
    let sub = match it.peek().map(|s| s.as_str()) {
        Some("run" | "check" | "reload" | "upgrade") => it.next().map(|s| s.as_str()),
        _ => None,
    };
    let mut config = DEFAULT_CONFIG.to_string();
    let (mut daemon, mut upgrade) = (false, false);
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
            "-V" | "--version" => return Ok(Command::Version),
            "-h" | "--help" => return Ok(Command::Help),
            other => match other.strip_prefix("--config=") {
                Some(v) => config = v.to_string(),
                None => return Err(format!("unknown argument `{other}`")),
            },
        }
    }
    match sub {
        Some(sub @ ("check" | "reload" | "upgrade")) if daemon || upgrade => {
            Err(format!("{sub} takes only -c FILE"))
        }
        Some("check") => Ok(Command::Check { config }),
        Some("reload") => Ok(Command::Reload { config }),
        Some("upgrade") => Ok(Command::Upgrade { config }),
        _ => Ok(Command::Run {
            config,
            daemon,
            upgrade,
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
                upgrade: false
            }
        );
        assert_eq!(
            parse(&args("run -u --config=b.yaml")).unwrap(),
            Command::Run {
                config: "b.yaml".into(),
                daemon: false,
                upgrade: true
            }
        );
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
