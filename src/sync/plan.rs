//! The planning of a cycle: pure functions of the data read, no I/O. The engine
//! reads, calls these, then carries out what they decide.

use crate::config::{QuantityField, ZeroUsage};
use crate::connectwise::model::{Addition, Agreement, CatalogItem, Company};
use crate::domain::{month::Month, products};
use crate::sophos::model::{Tenant, UsageLine};
use crate::store::{AdditionRecord, HeldUsageLine, Mapping, MappingKind, RunRecord, RunStatus};
use crate::sync::report::{
    CustomerReport, ErrorCode, ErrorReport, UnassignedUsage, UnmappedProduct,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// Quantities are whole licences in practice; compare with a tolerance anyway.
fn same_quantity(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

// ---------------------------------------------------------------- usage

/// A tenant's summed quantities by catalog identifier: a short sorted list, not a
/// map (a tenant has a handful of products, and a map's node per tenant was most
/// of a large partner's usage memory).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProductQuantities(Vec<(Arc<str>, f64)>);

impl ProductQuantities {
    pub fn get(&self, identifier: &str) -> Option<&f64> {
        self.position(identifier).ok().map(|i| &self.0[i].1)
    }
    pub fn contains_key(&self, identifier: &str) -> bool {
        self.position(identifier).is_ok()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.0.iter().map(|(i, q)| (&**i, *q))
    }
    fn add(&mut self, identifier: &Arc<str>, quantity: f64) {
        match self.position(identifier) {
            Ok(i) => self.0[i].1 += quantity,
            Err(i) => self.0.insert(i, (identifier.clone(), quantity)),
        }
    }
    fn position(&self, identifier: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(i, _)| (**i).cmp(identifier))
    }
}

impl std::ops::Index<&str> for ProductQuantities {
    type Output = f64;
    fn index(&self, identifier: &str) -> &f64 {
        self.get(identifier)
            .unwrap_or_else(|| panic!("no quantity for {identifier}"))
    }
}

impl FromIterator<(String, f64)> for ProductQuantities {
    fn from_iter<I: IntoIterator<Item = (String, f64)>>(entries: I) -> Self {
        let mut q = Self::default();
        for (identifier, quantity) in entries {
            q.add(&Arc::from(identifier), quantity);
        }
        q
    }
}

/// What a usage line says besides its quantity. Shared by every line that says
/// the same (interned while aggregating): 50,000 customers' lines repeat a few
/// dozen codes and names, so a line kept as evidence costs a pointer and a number.
#[derive(Debug, PartialEq, Eq, Hash)]
struct LineKind {
    identifier: Box<str>,
    product_code: Option<Box<str>>,
    sku: Option<Box<str>>,
    product_description: Option<Box<str>>,
}

/// One usage line behind a product's sum, kept for a held change's evidence.
#[derive(Debug, Clone, PartialEq)]
struct UsageEvidence {
    kind: Arc<LineKind>,
    quantity: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantUsage {
    /// identifier -> summed quantity over all order lines
    pub by_product: ProductQuantities,
    /// billing product codes with no catalog identifier, with what their lines say
    pub unmapped_codes: BTreeMap<String, UnmappedProduct>,
    /// the usage lines behind the sums (a held change's evidence): see `lines`
    evidence: Vec<UsageEvidence>,
}

impl TenantUsage {
    /// The usage lines behind `identifier`'s sum, in report order.
    pub fn lines(&self, identifier: &str) -> Vec<HeldUsageLine> {
        let text = |s: &Option<Box<str>>| s.as_deref().map(str::to_owned);
        self.evidence
            .iter()
            .filter(|e| &*e.kind.identifier == identifier)
            .map(|e| HeldUsageLine {
                product_code: text(&e.kind.product_code),
                sku: text(&e.kind.sku),
                product_description: text(&e.kind.product_description),
                quantity: e.quantity,
            })
            .collect()
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageSummary {
    pub tenants: BTreeMap<String, TenantUsage>,
    pub unassigned: Vec<UnassignedUsage>,
}

/// Sums usage lines by (tenant, identifier). Lines without a tenant are set aside,
/// never attributed by guess.
pub fn aggregate_usage(
    lines: &[UsageLine],
    codes: &BTreeMap<String, String>,
    field: QuantityField,
) -> UsageSummary {
    let mut aggregator = UsageAggregator::new(codes, field);
    aggregator.add(lines);
    aggregator.finish()
}

/// [`aggregate_usage`] a page at a time, so a month's report is never held whole:
/// each page of lines is summed into the summary and dropped.
pub struct UsageAggregator<'c> {
    codes: &'c BTreeMap<String, String>,
    field: QuantityField,
    summary: UsageSummary,
    identifiers: HashSet<Arc<str>>,
    kinds: HashSet<Arc<LineKind>>,
}

impl<'c> UsageAggregator<'c> {
    pub fn new(codes: &'c BTreeMap<String, String>, field: QuantityField) -> Self {
        Self {
            codes,
            field,
            summary: UsageSummary::default(),
            identifiers: HashSet::new(),
            kinds: HashSet::new(),
        }
    }

    pub fn add(&mut self, lines: &[UsageLine]) {
        for line in lines {
            self.add_line(line);
        }
    }

    pub fn finish(mut self) -> UsageSummary {
        for usage in self.summary.tenants.values_mut() {
            usage.evidence.shrink_to_fit();
            usage.by_product.0.shrink_to_fit();
        }
        self.summary
    }

    /// The shared copy of a catalog identifier.
    fn identifier(&mut self, identifier: &str) -> Arc<str> {
        if let Some(shared) = self.identifiers.get(identifier) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(identifier);
        self.identifiers.insert(shared.clone());
        shared
    }

    /// The shared copy of what `line` says, for `identifier`.
    fn kind(&mut self, identifier: &str, line: &UsageLine) -> Arc<LineKind> {
        let boxed = |s: &Option<String>| s.as_deref().map(Box::from);
        let kind = LineKind {
            identifier: identifier.into(),
            product_code: boxed(&line.product_code),
            sku: boxed(&line.sku),
            product_description: boxed(&line.product_description),
        };
        if let Some(shared) = self.kinds.get(&kind) {
            return shared.clone();
        }
        let shared = Arc::new(kind);
        self.kinds.insert(shared.clone());
        shared
    }

    fn add_line(&mut self, line: &UsageLine) {
        let quantity = match self.field {
            QuantityField::BillableQuantity => line.billable_quantity,
            QuantityField::ActualQuantity => line.actual_quantity,
        }
        .unwrap_or(0.0);
        let code = line.product_code.as_ref().or(line.sku.as_ref());
        let Some(tenant) = line.account_id.as_deref().filter(|t| !t.is_empty()) else {
            self.summary.unassigned.push(UnassignedUsage {
                product_code: code.cloned(),
                product_description: line.product_description.clone(),
                quantity,
            });
            return;
        };
        let identifier = code
            .and_then(|c| self.codes.get(c.as_str()))
            .map(|i| i.as_str());
        match identifier {
            Some(identifier) => {
                let evidence = UsageEvidence {
                    kind: self.kind(identifier, line),
                    quantity,
                };
                let identifier = self.identifier(identifier);
                let usage = self.tenant(tenant);
                usage.by_product.add(&identifier, quantity);
                usage.evidence.push(evidence);
            }
            None => {
                let code = code.cloned().unwrap_or_else(|| "(no product code)".into());
                let usage = self.tenant(tenant);
                let entry = usage
                    .unmapped_codes
                    .entry(code.clone())
                    .or_insert_with(|| unmapped(code, line));
                entry.quantity += quantity;
            }
        }
    }

    fn tenant(&mut self, tenant: &str) -> &mut TenantUsage {
        self.summary.tenants.entry(tenant.to_owned()).or_default()
    }
}

/// What an unmapped code's first line says about it (never used to map it).
fn unmapped(code: String, line: &UsageLine) -> UnmappedProduct {
    let known_as = products::known_code(&code)
        .and_then(|k| k.note)
        .map(str::to_owned);
    UnmappedProduct {
        product_code: code,
        product_description: line.product_description.clone(),
        sku: line.sku.clone(),
        product_group: line.product_group.clone(),
        quantity: 0.0,
        known_as,
    }
}

// ---------------------------------------------------------------- catalog

/// Where each selected identifier stands in the ConnectWise catalog.
#[derive(Debug, Clone, PartialEq)]
pub enum CatalogState {
    Existing(i64),
    /// To be created (its id is known only after the write).
    Missing,
    Ambiguous(Vec<i64>),
    /// Could not be created this run (reported): its product is left alone.
    Unavailable,
}

/// Matches selected identifiers against catalog items by `identifier` only (never
/// by description: partners edit descriptions).
pub fn plan_catalog(
    selected: &BTreeSet<String>,
    found: &[CatalogItem],
) -> BTreeMap<String, CatalogState> {
    selected
        .iter()
        .map(|identifier| {
            let ids: Vec<i64> = found
                .iter()
                .filter(|c| c.identifier.eq_ignore_ascii_case(identifier))
                .filter(|c| c.inactive_flag != Some(true))
                .map(|c| c.id)
                .collect();
            let state = match ids.as_slice() {
                [] => CatalogState::Missing,
                [id] => CatalogState::Existing(*id),
                _ => CatalogState::Ambiguous(ids),
            };
            (identifier.clone(), state)
        })
        .collect()
}

// ---------------------------------------------------------------- mapping

#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    Ignored(String),
    /// No company could be determined.
    Unmapped(ErrorReport),
    /// A company, but no usable agreement.
    AgreementProblem(Company, ErrorReport),
    Mapped {
        company: Company,
        agreement: Agreement,
        /// Found by the name rule now: remember it as a discovered mapping.
        newly_discovered: bool,
    },
}

/// Why a tenant is not synced at all, if it is not.
pub fn ignore_reason(tenant: &Tenant, mapping: Option<&Mapping>) -> Option<String> {
    if mapping.is_some_and(|m| m.kind == MappingKind::Ignored) {
        return Some("ignored by the operator (map --ignore)".into());
    }
    match tenant.billing_type.as_deref() {
        Some("usage") => {}
        Some("trial") => return Some("trial customer: trials are not billed".into()),
        Some("term") => {
            return Some(
                "term-licensed customer: billed by term licence, not by monthly usage".into(),
            );
        }
        Some(other) => return Some(format!("billing type {other:?} is not usage billing")),
        None => return Some("Sophos did not say how this customer is billed".into()),
    }
    if tenant.api_host.as_deref().is_none_or(str::is_empty) {
        return Some("the customer's Sophos Central account is not activated yet".into());
    }
    None
}

fn normalise(name: &str) -> String {
    name.trim().to_lowercase()
}

/// The hash [`Directory`] indexes names by (of the normalised name).
fn name_hash(name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    normalise(name).hash(&mut h);
    h.finish()
}

fn live(company: &Company) -> bool {
    company.deleted_flag != Some(true)
}

/// Companies and agreements indexed once per cycle, so that resolving each of
/// tens of thousands of tenants is a lookup, not a scan of every company and
/// agreement (which made a first run's CPU grow with the square of the partner).
/// Every list keeps the vendor's order, so errors name ids as a scan would.
pub struct Directory<'a> {
    /// Live companies by id (the first of a repeated id, as a scan finds it).
    live_by_id: HashMap<i64, &'a Company>,
    /// Live companies by a hash of their normalised name (not the name itself: a
    /// copy of every name is megabytes at a large partner's size); a lookup
    /// compares the names of the few companies it finds.
    live_by_name: HashMap<u64, Vec<&'a Company>>,
    /// Agreements by id (the first of a repeated id).
    agreement_by_id: HashMap<i64, &'a Agreement>,
    /// Agreements by the id of their company.
    agreements_of_company: HashMap<i64, Vec<&'a Agreement>>,
}

impl<'a> Directory<'a> {
    pub fn new(companies: &'a [Company], agreements: &'a [Agreement]) -> Self {
        let mut live_by_id = HashMap::with_capacity(companies.len());
        let mut live_by_name: HashMap<u64, Vec<&Company>> = HashMap::with_capacity(companies.len());
        for c in companies.iter().filter(|c| live(c)) {
            live_by_id.entry(c.id).or_insert(c);
            live_by_name.entry(name_hash(&c.name)).or_default().push(c);
        }
        let mut agreement_by_id = HashMap::with_capacity(agreements.len());
        let mut agreements_of_company: HashMap<i64, Vec<&Agreement>> = HashMap::new();
        for a in agreements {
            agreement_by_id.entry(a.id).or_insert(a);
            if let Some(company_id) = a.company.as_ref().and_then(|c| c.id) {
                agreements_of_company.entry(company_id).or_default().push(a);
            }
        }
        Self {
            live_by_id,
            live_by_name,
            agreement_by_id,
            agreements_of_company,
        }
    }

    fn live_company(&self, id: i64) -> Option<&'a Company> {
        self.live_by_id.get(&id).copied()
    }

    fn live_named(&self, name: &str) -> Vec<&'a Company> {
        let wanted = normalise(name);
        self.live_by_name
            .get(&name_hash(name))
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter(|c| normalise(&c.name) == wanted)
            .copied()
            .collect()
    }

    fn agreement(&self, id: i64) -> Option<&'a Agreement> {
        self.agreement_by_id.get(&id).copied()
    }

    fn agreements_of(&self, company_id: i64) -> &[&'a Agreement] {
        self.agreements_of_company
            .get(&company_id)
            .map_or(&[], Vec::as_slice)
    }
}

fn company_by_name<'a>(
    tenant: &Tenant,
    directory: &Directory<'a>,
) -> Result<&'a Company, ErrorReport> {
    match directory.live_named(&tenant.name).as_slice() {
        [one] => Ok(one),
        [] => Err(ErrorReport::new(
            ErrorCode::CompanyNotFound,
            format!("no ConnectWise company is named {:?}", tenant.name.trim()),
        )),
        many => Err(ErrorReport::new(
            ErrorCode::CompanyAmbiguous,
            format!(
                "{} ConnectWise companies are named {:?} (ids {})",
                many.len(),
                tenant.name.trim(),
                join_ids(many.iter().map(|c| c.id))
            ),
        )),
    }
}

fn join_ids(ids: impl Iterator<Item = i64>) -> String {
    ids.map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

fn resolve_company<'a>(
    tenant: &Tenant,
    mapping: Option<&Mapping>,
    directory: &Directory<'a>,
) -> Result<(&'a Company, bool), ErrorReport> {
    let by_id = |id: i64| directory.live_company(id);
    match mapping {
        Some(m) if m.kind == MappingKind::Manual => {
            let id = m.company_id.unwrap_or_default();
            by_id(id).map(|c| (c, false)).ok_or_else(|| {
                ErrorReport::new(
                    ErrorCode::CompanyNotFound,
                    format!(
                        "the manually mapped ConnectWise company {id} does not exist or is deleted"
                    ),
                )
            })
        }
        Some(m) => match m.company_id.and_then(by_id) {
            Some(c) => Ok((c, false)),
            None => company_by_name(tenant, directory).map(|c| (c, true)),
        },
        None => company_by_name(tenant, directory).map(|c| (c, true)),
    }
}

/// Whether the sync would bill `agreement` for `company_id`: the company's,
/// of the configured type, and [`usable`]. The console offers only these.
pub fn eligible(agreement: &Agreement, company_id: i64, agreement_type: &str) -> bool {
    let of_company = agreement.company.as_ref().and_then(|c| c.id) == Some(company_id);
    let of_type = agreement
        .agreement_type
        .as_ref()
        .and_then(|t| t.name.as_deref())
        .is_some_and(|n| n.trim().eq_ignore_ascii_case(agreement_type.trim()));
    of_company && of_type && usable(agreement)
}

/// Active and not cancelled (expired or inactive agreements do not bill).
pub fn usable(agreement: &Agreement) -> bool {
    agreement.cancelled_flag != Some(true)
        && agreement
            .agreement_status
            .as_deref()
            .is_none_or(|s| s.eq_ignore_ascii_case("Active"))
}

fn resolve_agreement<'a>(
    company: &Company,
    mapping: Option<&Mapping>,
    directory: &Directory<'a>,
    agreement_type: &str,
) -> Result<&'a Agreement, ErrorReport> {
    let pinned = mapping.and_then(|m| m.agreement_id.map(|id| (m.kind, id)));
    if let Some((kind, id)) = pinned {
        let found = directory.agreement(id);
        let belongs = |a: &&Agreement| a.company.as_ref().and_then(|c| c.id) == Some(company.id);
        match (kind, found.filter(belongs).filter(|a| usable(a))) {
            (_, Some(a))
                if kind == MappingKind::Manual || eligible(a, company.id, agreement_type) =>
            {
                return Ok(a);
            }
            (MappingKind::Manual, _) => {
                return Err(ErrorReport::new(
                    ErrorCode::AgreementNotFound,
                    format!(
                        "the manually mapped agreement {id} does not exist, is not active, or does not belong to company {}",
                        company.id
                    ),
                ));
            }
            _ => {} // a discovered agreement that is no longer eligible: look again
        }
    }
    // Only the company's own agreements can be eligible for it.
    let hits: Vec<&Agreement> = directory
        .agreements_of(company.id)
        .iter()
        .copied()
        .filter(|a| eligible(a, company.id, agreement_type))
        .collect();
    match hits.as_slice() {
        [one] => Ok(one),
        [] => Err(ErrorReport::new(
            ErrorCode::AgreementNotFound,
            format!(
                "company {} ({}) has no active agreement of type {agreement_type:?}",
                company.id, company.identifier
            ),
        )),
        many => Err(ErrorReport::new(
            ErrorCode::AgreementAmbiguous,
            format!(
                "company {} has {} active agreements of type {agreement_type:?} (ids {})",
                company.id,
                many.len(),
                join_ids(many.iter().map(|a| a.id))
            ),
        )),
    }
}

/// Resolves every tenant, then refuses agreements claimed by more than one tenant
/// (a manual mapping keeps its agreement against discovered ones).
pub fn resolve_all(
    tenants: &[Tenant],
    mappings: &BTreeMap<String, Mapping>,
    companies: &[Company],
    agreements: &[Agreement],
    agreement_type: &str,
) -> Vec<Resolution> {
    let resolver = Resolver::new(tenants, mappings, companies, agreements, agreement_type);
    tenants
        .iter()
        .enumerate()
        .map(|(i, t)| resolver.resolve(i, t))
        .collect()
}

/// [`resolve_all`] one tenant at a time, as its customer is synced: a large
/// partner's resolutions (each with its own company and agreement) are never held
/// together. Made with one pass over every tenant that keeps only which
/// agreements several of them would share (refused, see
/// [`refuse_shared_agreements`]).
pub struct Resolver<'a> {
    directory: Directory<'a>,
    mappings: &'a BTreeMap<String, Mapping>,
    agreement_type: &'a str,
    /// The agreements several tenants resolve to, with who would share them.
    shared: HashMap<i64, SharedAgreement>,
}

struct SharedAgreement {
    /// The tenant (by its place in the list) whose manual mapping keeps it.
    keeper: Option<usize>,
    names: String,
}

impl<'a> Resolver<'a> {
    pub fn new(
        tenants: &[Tenant],
        mappings: &'a BTreeMap<String, Mapping>,
        companies: &'a [Company],
        agreements: &'a [Agreement],
        agreement_type: &'a str,
    ) -> Self {
        let directory = Directory::new(companies, agreements);
        // (agreement, tenant place) pairs, sorted: a flat list is a fraction of a
        // map of lists at a large partner's size.
        let mut users: Vec<(i64, u32)> = Vec::new();
        for (i, t) in tenants.iter().enumerate() {
            let r = resolve_in(t, mappings.get(&t.id), &directory, agreement_type);
            if let Resolution::Mapped { agreement, .. } = r {
                users.push((agreement.id, i as u32));
            }
        }
        users.sort_unstable();
        let shared = refuse_shared_agreements(tenants, mappings, &users);
        Self {
            directory,
            mappings,
            agreement_type,
            shared,
        }
    }

    /// The resolution of `tenant`, at `place` in the tenant list `new` saw.
    pub fn resolve(&self, place: usize, tenant: &Tenant) -> Resolution {
        let r = resolve_in(
            tenant,
            self.mappings.get(&tenant.id),
            &self.directory,
            self.agreement_type,
        );
        let Resolution::Mapped {
            company, agreement, ..
        } = &r
        else {
            return r;
        };
        match self.shared.get(&agreement.id) {
            Some(shared) if shared.keeper != Some(place) => {
                let error = ErrorReport::new(
                    ErrorCode::AgreementShared,
                    format!(
                        "agreement {} would serve several customers: {}",
                        agreement.id, shared.names
                    ),
                );
                Resolution::AgreementProblem(company.clone(), error)
            }
            _ => r,
        }
    }
}

pub fn resolve_one(
    tenant: &Tenant,
    mapping: Option<&Mapping>,
    companies: &[Company],
    agreements: &[Agreement],
    agreement_type: &str,
) -> Resolution {
    let directory = Directory::new(companies, agreements);
    resolve_in(tenant, mapping, &directory, agreement_type)
}

/// [`resolve_one`] against companies and agreements already indexed.
pub fn resolve_in(
    tenant: &Tenant,
    mapping: Option<&Mapping>,
    directory: &Directory<'_>,
    agreement_type: &str,
) -> Resolution {
    if let Some(reason) = ignore_reason(tenant, mapping) {
        return Resolution::Ignored(reason);
    }
    let (company, by_name) = match resolve_company(tenant, mapping, directory) {
        Ok(found) => found,
        Err(e) => return Resolution::Unmapped(e),
    };
    match resolve_agreement(company, mapping, directory, agreement_type) {
        Ok(agreement) => Resolution::Mapped {
            company: company.clone(),
            agreement: agreement.clone(),
            newly_discovered: by_name
                || mapping.is_some_and(|m| {
                    m.kind == MappingKind::Discovered && m.agreement_id != Some(agreement.id)
                }),
        },
        Err(e) => Resolution::AgreementProblem(company.clone(), e),
    }
}

/// The agreements (with the places of the tenants) that several tenants resolve
/// to: two customers on one agreement would bill one's usage to the other, so each
/// is refused for all but the one tenant whose manual mapping names it.
fn refuse_shared_agreements(
    tenants: &[Tenant],
    mappings: &BTreeMap<String, Mapping>,
    users: &[(i64, u32)],
) -> HashMap<i64, SharedAgreement> {
    let manual = |i: &usize| {
        mappings
            .get(&tenants[*i].id)
            .is_some_and(|m| m.kind == MappingKind::Manual && m.agreement_id.is_some())
    };
    users
        .chunk_by(|a, b| a.0 == b.0)
        .filter(|group| group.len() > 1)
        .map(|group| {
            let idx: Vec<usize> = group.iter().map(|(_, i)| *i as usize).collect();
            let keeper = match idx
                .iter()
                .filter(|i| manual(i))
                .collect::<Vec<_>>()
                .as_slice()
            {
                [one] => Some(**one),
                _ => None,
            };
            let names: Vec<&str> = idx.iter().map(|i| tenants[*i].name.as_str()).collect();
            let shared = SharedAgreement {
                keeper,
                names: names.join(", "),
            };
            (group[0].0, shared)
        })
        .collect()
}

// ---------------------------------------------------------------- additions

#[derive(Debug, Clone, PartialEq)]
pub enum AdditionOp {
    /// `product_id` is None in a dry run whose catalog item does not exist yet.
    Create {
        product_id: Option<i64>,
        quantity: f64,
        effective_date: String,
    },
    Update {
        addition_id: i64,
        old: f64,
        new: f64,
    },
    Cancel {
        addition_id: i64,
        old: f64,
        cancelled_date: String,
    },
    Unchanged {
        addition_id: i64,
        quantity: f64,
    },
    Ambiguous {
        addition_ids: Vec<i64>,
    },
    /// The product's catalog item is ambiguous: nothing can be done safely.
    CatalogUnavailable,
}

impl AdditionOp {
    /// The existing addition an operation is about, with the quantity
    /// ConnectWise holds for it.
    pub fn existing(&self) -> Option<(i64, f64)> {
        match self {
            AdditionOp::Update {
                addition_id, old, ..
            }
            | AdditionOp::Cancel {
                addition_id, old, ..
            } => Some((*addition_id, *old)),
            AdditionOp::Unchanged {
                addition_id,
                quantity,
            } => Some((*addition_id, *quantity)),
            AdditionOp::Create { .. }
            | AdditionOp::Ambiguous { .. }
            | AdditionOp::CatalogUnavailable => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProductPlan {
    pub identifier: String,
    pub sophos_quantity: f64,
    pub op: AdditionOp,
    /// The addition exists in ConnectWise but the store did not know it.
    pub adopted: bool,
    /// The store remembered this addition with another quantity than ConnectWise
    /// holds: a write whose bookkeeping a crash cut off, or an edit made in
    /// ConnectWise. The engine puts it on the audit trail and remembers the
    /// quantity ConnectWise holds.
    pub drifted_from: Option<f64>,
}

pub struct AdditionRules<'a> {
    pub selected: &'a BTreeSet<String>,
    pub catalog: &'a BTreeMap<String, CatalogState>,
    pub zero_usage: ZeroUsage,
    pub month: Month,
}

/// Decides, for one mapped agreement, what happens to each selected product.
/// `records` are the store's remembered additions of this tenant.
pub fn plan_additions(
    usage: Option<&TenantUsage>,
    additions: &[Addition],
    records: &[AdditionRecord],
    rules: &AdditionRules,
) -> Vec<ProductPlan> {
    rules
        .selected
        .iter()
        .filter_map(|identifier| {
            let quantity = usage.and_then(|u| u.by_product.get(identifier)).copied();
            let state = rules.catalog.get(identifier)?;
            plan_product(identifier, quantity, state, additions, records, rules)
        })
        .collect()
}

fn plan_product(
    identifier: &str,
    quantity: Option<f64>,
    state: &CatalogState,
    additions: &[Addition],
    records: &[AdditionRecord],
    rules: &AdditionRules,
) -> Option<ProductPlan> {
    let plan = |op, adopted| {
        Some(ProductPlan {
            identifier: identifier.to_owned(),
            sophos_quantity: quantity.unwrap_or(0.0),
            op,
            adopted,
            drifted_from: None,
        })
    };
    let product_id = match state {
        CatalogState::Ambiguous(_) | CatalogState::Unavailable if quantity.is_some() => {
            return plan(AdditionOp::CatalogUnavailable, false);
        }
        CatalogState::Ambiguous(_) | CatalogState::Unavailable => return None,
        CatalogState::Missing => None,
        CatalogState::Existing(id) => Some(*id),
    };
    let existing: Vec<&Addition> = additions
        .iter()
        .filter(|a| a.is_active() && product_id.is_some() && a.product_id() == product_id)
        .collect();
    let earlier = billed_as_another_item(identifier, product_id, additions, records, rules);
    if !earlier.is_empty() {
        // While that addition is active, one for this item would bill twice.
        let mut addition_ids: Vec<i64> = existing.iter().map(|a| a.id).chain(earlier).collect();
        addition_ids.sort_unstable();
        return plan(AdditionOp::Ambiguous { addition_ids }, false);
    }
    let used = quantity.filter(|q| *q > 0.0);
    match (existing.as_slice(), used) {
        ([], None) => None,
        ([], Some(q)) => plan(
            AdditionOp::Create {
                product_id,
                quantity: q,
                effective_date: Month::cw_datetime(rules.month.first_day()),
            },
            false,
        ),
        ([one], _) => {
            let record = records
                .iter()
                .find(|r| r.identifier == identifier && r.addition_id == one.id);
            let current = one.quantity.unwrap_or(0.0);
            plan(existing_op(one, used, rules), record.is_none()).map(|p| ProductPlan {
                drifted_from: record
                    .map(|r| r.quantity)
                    .filter(|q| !same_quantity(*q, current)),
                ..p
            })
        }
        (many, _) => plan(
            AdditionOp::Ambiguous {
                addition_ids: many.iter().map(|a| a.id).collect(),
            },
            false,
        ),
    }
}

/// The remembered additions of `identifier` that are still active but of a
/// catalog item no selected product uses now: the product was billed as another
/// item before (the `catalogItems` setting changed).
fn billed_as_another_item(
    identifier: &str,
    product_id: Option<i64>,
    additions: &[Addition],
    records: &[AdditionRecord],
    rules: &AdditionRules,
) -> Vec<i64> {
    if product_id.is_none() {
        return Vec::new();
    }
    let in_use = |id: Option<i64>| {
        rules
            .catalog
            .values()
            .any(|s| matches!(s, CatalogState::Existing(e) if Some(*e) == id))
    };
    records
        .iter()
        .filter(|r| r.identifier == identifier)
        .filter(|r| {
            additions
                .iter()
                .any(|a| a.id == r.addition_id && a.is_active() && !in_use(a.product_id()))
        })
        .map(|r| r.addition_id)
        .collect()
}

/// The remembered additions that ConnectWise holds as cancelled: a cancel whose
/// bookkeeping a crash cut off, or one made by hand. The store forgets them, and
/// the trail says so.
pub fn cancelled_records<'a>(
    additions: &[Addition],
    records: &'a [AdditionRecord],
) -> Vec<&'a AdditionRecord> {
    records
        .iter()
        .filter(|r| {
            additions
                .iter()
                .any(|a| a.id == r.addition_id && !a.is_active())
        })
        .collect()
}

fn existing_op(addition: &Addition, used: Option<f64>, rules: &AdditionRules) -> AdditionOp {
    let old = addition.quantity.unwrap_or(0.0);
    let unchanged = AdditionOp::Unchanged {
        addition_id: addition.id,
        quantity: old,
    };
    match (used, rules.zero_usage) {
        (Some(q), _) if same_quantity(q, old) => unchanged,
        (Some(q), _) => AdditionOp::Update {
            addition_id: addition.id,
            old,
            new: q,
        },
        (None, ZeroUsage::Keep) => unchanged,
        (None, ZeroUsage::Zero) if same_quantity(old, 0.0) => unchanged,
        (None, ZeroUsage::Zero) => AdditionOp::Update {
            addition_id: addition.id,
            old,
            new: 0.0,
        },
        (None, ZeroUsage::Cancel) => AdditionOp::Cancel {
            addition_id: addition.id,
            old,
            cancelled_date: Month::cw_datetime(rules.month.last_day()),
        },
    }
}

// ---------------------------------------------------------------- usage drop guard

/// The customers with usage in this month's report, as the usage drop guard
/// counts them: tenants of the run's Sophos tenant list with a quantity above 0
/// of a selected product. Only selected products count because they are the
/// only quantities a run can lower, and because a run's stored results show
/// exactly that afterwards ([`had_usage`]), so both sides of the comparison
/// count alike. Bounded by the tenant list the run holds anyway.
pub fn customers_with_usage(
    tenants: &[Tenant],
    usage: &UsageSummary,
    selected: &BTreeSet<String>,
) -> BTreeSet<String> {
    tenants
        .iter()
        .filter(|t| {
            usage.tenants.get(&t.id).is_some_and(|u| {
                u.by_product
                    .iter()
                    .any(|(identifier, q)| q > 0.0 && selected.contains(identifier))
            })
        })
        .map(|t| t.id.clone())
        .collect()
}

/// Whether a customer's stored result (of an earlier run) shows usage: one of
/// its products had a Sophos quantity above 0. A customer that was unmapped or
/// ignored then has no products and does not count: nothing of it could be
/// lowered now either.
pub fn had_usage(c: &CustomerReport) -> bool {
    c.products.iter().any(|p| p.sophos_quantity > 0.0)
}

/// Whether a stored run is one the guard compares with: a writing run that
/// finished (succeeded or partial), recorded how many customers had usage, and
/// was not itself stopped by the guard (else one short report would become the
/// yardstick and the next run would lower everything it held back).
pub fn comparable_run(r: &RunRecord, this_run_id: &str) -> bool {
    let finished = matches!(r.status, RunStatus::Succeeded | RunStatus::Partial);
    let counted = r
        .report
        .get("customersWithUsage")
        .is_some_and(|v| v.is_u64());
    let guarded = r
        .report
        .get("usageDropGuarded")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    r.run_id != this_run_id && !r.dry_run && finished && counted && !guarded
}

/// How many of the compared run's customers with usage there were, and how many
/// of them have none now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageDrop {
    pub previous: u64,
    pub missing: u64,
}

impl UsageDrop {
    /// Counts one customer of the compared run; `now`: the customers with usage now.
    pub fn count(&mut self, c: &CustomerReport, now: &BTreeSet<String>) {
        if had_usage(c) {
            self.previous += 1;
            self.missing += u64::from(!now.contains(&c.tenant_id));
        }
    }

    /// Strictly more than `guard_percent` of the compared run's customers with
    /// usage have none now. A guard of 0 is off; nothing to compare is no drop.
    pub fn exceeds(&self, guard_percent: f64) -> bool {
        guard_percent > 0.0
            && self.previous > 0
            && self.missing as f64 * 100.0 > guard_percent * self.previous as f64
    }
}

/// What a plan would lower a quantity to (a decrease, a zero or a cancel), or
/// None when it does not lower one: what the guard holds back.
pub fn lowered_to(p: &ProductPlan) -> Option<f64> {
    match &p.op {
        AdditionOp::Update { old, new, .. } if *new < *old => Some(*new),
        AdditionOp::Cancel { .. } => Some(0.0),
        _ => None,
    }
}
#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
