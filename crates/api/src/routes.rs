//! The route table. The router matches requests against [`ROUTES`] and nothing else, and the
//! tests check it against `openapi.yaml`, so the document and the server cannot drift apart.

/// What a route does; the handler dispatches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Info,
    Actions,
    PatchVm,
    VmConfig,
    GetBalloon,
    PutBalloon,
    PatchBalloon,
    BalloonStatistics,
    Metrics,
    Console,
    CreateSnapshot,
    LoadSnapshot,
    Migrate,
    Progress,
}

/// One method on one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub operation: Operation,
}

const fn route(method: &'static str, path: &'static str, operation: Operation) -> Route {
    Route { method, path, operation }
}

/// Every route the server answers.
pub const ROUTES: &[Route] = &[
    route("GET", "/", Operation::Info),
    route("PUT", "/actions", Operation::Actions),
    route("PATCH", "/vm", Operation::PatchVm),
    route("GET", "/vm/config", Operation::VmConfig),
    route("GET", "/balloon", Operation::GetBalloon),
    route("PUT", "/balloon", Operation::PutBalloon),
    route("PATCH", "/balloon", Operation::PatchBalloon),
    route("GET", "/balloon/statistics", Operation::BalloonStatistics),
    route("GET", "/metrics", Operation::Metrics),
    route("GET", "/console", Operation::Console),
    route("PUT", "/snapshot/create", Operation::CreateSnapshot),
    route("PUT", "/snapshot/load", Operation::LoadSnapshot),
    route("PUT", "/migrate", Operation::Migrate),
    route("GET", "/progress", Operation::Progress),
];

/// What the table says about a request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    Found(Operation),
    /// The path exists but not with this method; these are the methods it has.
    WrongMethod(Vec<&'static str>),
    NotFound,
}

pub(crate) fn lookup(method: &str, path: &str) -> Lookup {
    let mut allowed = Vec::new();
    for r in ROUTES.iter().filter(|r| r.path == path) {
        if r.method == method {
            return Lookup::Found(r.operation);
        }
        allowed.push(r.method);
    }
    if allowed.is_empty() {
        Lookup::NotFound
    } else {
        Lookup::WrongMethod(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_distinguishes_unknown_paths_from_wrong_methods() {
        assert_eq!(lookup("PATCH", "/balloon"), Lookup::Found(Operation::PatchBalloon));
        assert_eq!(lookup("DELETE", "/balloon"), Lookup::WrongMethod(vec!["GET", "PUT", "PATCH"]));
        assert_eq!(lookup("GET", "/balloon/"), Lookup::NotFound);
        assert_eq!(lookup("GET", "/nope"), Lookup::NotFound);
    }

    #[test]
    fn no_route_is_listed_twice() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(a.method != b.method || a.path != b.path, "{} {} twice", a.method, a.path);
            }
        }
    }
}
