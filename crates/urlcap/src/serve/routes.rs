//! The route table: which handler serves a path, and the handles each request of it gets.

use crate::host::{Handler, WasmHost};
use crate::policy::{Attenuation, Authority, HandleTable, PathPrefix};

/// A route as configured: a `[[route]]` of the manifest, or the one component given on the
/// command line (prefix `/`, every authority).
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// The path prefix it serves (whole segments).
    pub prefix: PathPrefix,
    /// The component's bytes.
    pub wasm: Vec<u8>,
    /// What to call it in start-up output and errors (its file).
    pub component: String,
    /// Names of the authorities (from the config's grants) its handler is preopened.
    pub authorities: Vec<String>,
}

/// A route ready to serve: its handler linked, its authorities resolved to root handles.
pub(crate) struct Route {
    pub(crate) prefix: PathPrefix,
    pub(crate) component: String,
    pub(crate) handler: Handler,
    /// Root handles and the names the handler sees them under.
    authorities: Vec<(Authority, String)>,
}

impl Route {
    /// Link `spec`'s component and find its authorities among `roots`.
    pub(crate) fn load(
        spec: RouteSpec,
        host: &WasmHost,
        roots: &HandleTable,
    ) -> Result<Route, String> {
        let handler = host.handler_for(&spec.wasm).map_err(|e| {
            let text = e.to_string();
            format!(
                "{}: not a wasi:http/proxy component urlcap can run: {}",
                spec.component,
                text.lines().next().unwrap_or("unknown error")
            )
        })?;
        let authorities = spec
            .authorities
            .iter()
            .map(|name| {
                roots
                    .get(name)
                    .map(|a| (a.clone(), name.clone()))
                    .ok_or_else(|| format!("{}: no authority named {name:?}", spec.component))
            })
            .collect::<Result<_, _>>()?;
        Ok(Route {
            prefix: spec.prefix,
            component: spec.component,
            handler,
            authorities,
        })
    }

    /// The names of the authorities this route's handler is preopened.
    pub(crate) fn authority_names(&self) -> impl Iterator<Item = &str> {
        self.authorities.iter().map(|(_, n)| n.as_str())
    }

    /// The handle table of one request: a fresh child of each of the route's authorities,
    /// under the same name. Children, not the roots: what a request spends counts against
    /// the root (budgets and rates are the server's), but a handler that revokes its handle
    /// revokes only its own request's child, and its records name the request's lineage. A
    /// root that can no longer derive (revoked, expired) is left out, so its requests are
    /// denied as if it were not granted.
    pub(crate) fn request_handles(&self) -> HandleTable {
        let fresh = self.authorities.iter().filter_map(|(root, name)| {
            root.derive(&Attenuation::default())
                .ok()
                .map(|child| (child, name.clone()))
        });
        HandleTable::new(fresh).unwrap_or_default()
    }
}

/// Routes with disjoint prefixes; a path has at most one.
pub(crate) struct Routes(Vec<Route>);

impl Routes {
    /// Routes whose prefixes must not overlap (the manifest checks this with file:line:column;
    /// checked again here for embedders).
    pub(crate) fn new(routes: Vec<Route>) -> Result<Routes, String> {
        for (i, a) in routes.iter().enumerate() {
            if let Some(b) = routes[i + 1..]
                .iter()
                .find(|b| a.prefix.covers(&b.prefix) || b.prefix.covers(&a.prefix))
            {
                return Err(format!(
                    "route prefixes {} and {} overlap",
                    a.prefix.as_str(),
                    b.prefix.as_str()
                ));
            }
        }
        if routes.is_empty() {
            return Err("nothing to serve: give a component or [[route]] tables".into());
        }
        Ok(Routes(routes))
    }

    /// The route that serves `path` (the request target's path as received, matched by whole
    /// segments). Which route a path selects is not a security boundary: whichever it is, the
    /// handler gets only that route's authorities.
    pub(crate) fn find(&self, path: &str) -> Option<&Route> {
        self.0.iter().find(|r| r.prefix.grants(path))
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Route> {
        self.0.iter()
    }
}
