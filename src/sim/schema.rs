//! The simulated entity model: entity sets, their properties with Edm types (as in
//! citrix-monitor-api.md §3) and navigation properties (§2.3). Adding an entity set means adding
//! an `EntityDef` here and rows in generate.rs; query code is generic over these tables. It
//! must not hold data or know about HTTP.

/// Edm type of a property, as far as the simulator needs to type-check `$filter` literals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Guid,
    Int32,
    Int64,
    Double,
    Str,
    Bool,
    /// Edm.DateTimeOffset, always UTC on the wire.
    Date,
}

impl Ty {
    pub fn edm(self) -> &'static str {
        match self {
            Ty::Guid => "Edm.Guid",
            Ty::Int32 => "Edm.Int32",
            Ty::Int64 => "Edm.Int64",
            Ty::Double => "Edm.Double",
            Ty::Str => "Edm.String",
            Ty::Bool => "Edm.Boolean",
            Ty::Date => "Edm.DateTimeOffset",
        }
    }
}

#[derive(Debug)]
pub struct PropDef {
    pub name: &'static str,
    pub ty: Ty,
}

#[derive(Debug, Clone, Copy)]
pub enum NavKind {
    /// Single-valued: this row's property `fk` holds the target's key.
    One { fk: &'static str },
    /// Collection: the target rows whose property `target_fk` equals this row's key.
    Many { target_fk: &'static str },
}

#[derive(Debug)]
pub struct NavDef {
    pub name: &'static str,
    /// Entity set name of the target.
    pub target: &'static str,
    pub kind: NavKind,
}

#[derive(Debug)]
pub struct EntityDef {
    pub set: &'static str,
    /// Entity type name, used in error messages like ASP.NET OData's.
    pub type_name: &'static str,
    pub key: &'static str,
    pub props: &'static [PropDef],
    pub navs: &'static [NavDef],
}

impl EntityDef {
    pub fn prop(&self, name: &str) -> Option<usize> {
        self.props.iter().position(|p| p.name == name)
    }

    pub fn nav(&self, name: &str) -> Option<&'static NavDef> {
        // `navs` is a `&'static` slice, so its elements are too.
        let navs: &'static [NavDef] = self.navs;
        navs.iter().find(|n| n.name == name)
    }

    pub fn key_index(&self) -> usize {
        self.prop(self.key).expect("schema: key is a property")
    }
}

const fn p(name: &'static str, ty: Ty) -> PropDef {
    PropDef { name, ty }
}

const fn one(name: &'static str, target: &'static str, fk: &'static str) -> NavDef {
    NavDef {
        name,
        target,
        kind: NavKind::One { fk },
    }
}

const fn many(name: &'static str, target: &'static str, target_fk: &'static str) -> NavDef {
    NavDef {
        name,
        target,
        kind: NavKind::Many { target_fk },
    }
}

use Ty::*;

pub static DESKTOP_GROUPS: EntityDef = EntityDef {
    set: "DesktopGroups",
    type_name: "Citrix.Monitor.Repository.V2.DesktopGroup",
    key: "Id",
    props: &[
        p("Id", Guid),
        p("Name", Str),
        p("IsRemotePC", Bool),
        p("DesktopKind", Int32),
        p("LifecycleState", Int32),
        p("SessionSupport", Int32),
        p("DeliveryType", Int32),
        p("IsInMaintenanceMode", Bool),
        p("CreatedDate", Date),
        p("ModifiedDate", Date),
    ],
    navs: &[many("Machines", "Machines", "DesktopGroupId")],
};

pub static CATALOGS: EntityDef = EntityDef {
    set: "Catalogs",
    type_name: "Citrix.Monitor.Repository.V2.Catalog",
    key: "Id",
    props: &[
        p("Id", Guid),
        p("Name", Str),
        p("LifecycleState", Int32),
        p("ProvisioningType", Int32),
        p("PersistentUserChanges", Int32),
        p("IsMachinePhysical", Bool),
        p("AllocationType", Int32),
        p("SessionSupport", Int32),
        p("ProvisioningSchemeId", Guid),
        p("ZoneUid", Guid),
        p("ZoneName", Str),
        p("CreatedDate", Date),
        p("ModifiedDate", Date),
    ],
    navs: &[many("Machines", "Machines", "CatalogId")],
};

pub static HYPERVISORS: EntityDef = EntityDef {
    set: "Hypervisors",
    type_name: "Citrix.Monitor.Repository.V2.Hypervisor",
    key: "Id",
    props: &[
        p("Id", Guid),
        p("Name", Str),
        p("LifecycleState", Int32),
        p("CreatedDate", Date),
        p("ModifiedDate", Date),
    ],
    navs: &[],
};

pub static MACHINES: EntityDef = EntityDef {
    set: "Machines",
    type_name: "Citrix.Monitor.Repository.V2.Machine",
    key: "Id",
    props: &[
        p("Id", Guid),
        p("Sid", Str),
        p("Name", Str),
        p("DnsName", Str),
        p("LifecycleState", Int32),
        p("IPAddress", Str),
        p("HostedMachineId", Str),
        p("HostingServerName", Str),
        p("HostedMachineName", Str),
        p("IsAssigned", Bool),
        p("IsInMaintenanceMode", Bool),
        p("IsPendingUpdate", Bool),
        p("AgentVersion", Str),
        p("AssociatedUserFullNames", Str),
        p("AssociatedUserNames", Str),
        p("AssociatedUserUPNs", Str),
        p("CurrentRegistrationState", Int32),
        p("RegistrationStateChangeDate", Date),
        p("LastDeregisteredCode", Int32),
        p("LastDeregisteredDate", Date),
        p("CurrentPowerState", Int32),
        p("CurrentSessionCount", Int32),
        p("ControllerDnsName", Str),
        p("PoweredOnDate", Date),
        p("PowerStateChangeDate", Date),
        p("FunctionalLevel", Int32),
        p("FailureDate", Date),
        p("WindowsConnectionSetting", Int32),
        p("IsPreparing", Bool),
        p("FaultState", Int32),
        p("OSType", Str),
        p("CurrentLoadIndexId", Int64),
        p("CatalogId", Guid),
        p("DesktopGroupId", Guid),
        p("HypervisorId", Guid),
        p("Hash", Str),
        p("MachineRole", Int32),
        p("CreatedDate", Date),
        p("ModifiedDate", Date),
    ],
    navs: &[
        one("DesktopGroup", "DesktopGroups", "DesktopGroupId"),
        one("Catalog", "Catalogs", "CatalogId"),
        one("Hypervisor", "Hypervisors", "HypervisorId"),
        one("CurrentLoadIndex", "LoadIndexes", "CurrentLoadIndexId"),
        many("Sessions", "Sessions", "MachineId"),
        many("LoadIndex", "LoadIndexes", "MachineId"),
        many("MachineFailures", "MachineFailureLogs", "MachineId"),
        many("MachineHotfixLogs", "MachineHotfixLogs", "MachineId"),
    ],
};

pub static USERS: EntityDef = EntityDef {
    set: "Users",
    type_name: "Citrix.Monitor.Repository.V2.User",
    key: "Id",
    props: &[
        p("Id", Int32),
        p("Sid", Str),
        p("Upn", Str),
        p("UserName", Str),
        p("FullName", Str),
        p("Domain", Str),
        p("CreatedDate", Date),
        p("ModifiedDate", Date),
    ],
    navs: &[many("Sessions", "Sessions", "UserId")],
};

pub static SESSIONS: EntityDef = EntityDef {
    set: "Sessions",
    type_name: "Citrix.Monitor.Repository.V2.Session",
    key: "SessionKey",
    props: &[
        p("SessionKey", Guid),
        p("StartDate", Date),
        p("LogOnDuration", Int64),
        p("EndDate", Date),
        p("ExitCode", Int32),
        p("FailureId", Int32),
        p("FailureDate", Date),
        p("ConnectionState", Int32),
        p("SessionIdleTime", Date),
        p("ConnectionStateChangeDate", Date),
        p("LifecycleState", Int32),
        p("CurrentConnectionId", Int64),
        p("UserId", Int32),
        p("MachineId", Guid),
        p("SessionType", Int32),
        p("IsAnonymous", Bool),
        p("PublishedDesktopId", Int32),
        p("CreatedDate", Date),
        p("ModifiedDate", Date),
    ],
    navs: &[
        many("Connections", "Connections", "SessionKey"),
        one("CurrentConnection", "Connections", "CurrentConnectionId"),
        one("User", "Users", "UserId"),
        one("Machine", "Machines", "MachineId"),
        one("Failure", "ConnectionFailureCategories", "FailureId"),
        many("ApplicationInstances", "ApplicationInstances", "SessionKey"),
        many("SessionMetrics", "SessionMetrics", "SessionId"),
    ],
};

pub static CONNECTIONS: EntityDef = EntityDef {
    set: "Connections",
    type_name: "Citrix.Monitor.Repository.V2.Connection",
    key: "Id",
    props: &[
        p("Id", Int64),
        p("ClientName", Str),
        p("ClientAddress", Str),
        p("ClientVersion", Str),
        p("ClientPlatform", Str),
        p("ConnectedViaHostName", Str),
        p("ConnectedViaIPAddress", Str),
        p("LaunchedViaHostName", Str),
        p("LaunchedViaIPAddress", Str),
        p("IsReconnect", Bool),
        p("IsSecureIca", Bool),
        p("Protocol", Str),
        p("LogOnStartDate", Date),
        p("LogOnEndDate", Date),
        p("BrokeringDuration", Int64),
        p("BrokeringDate", Date),
        p("DisconnectCode", Int32),
        p("DisconnectDate", Date),
        p("VMStartStartDate", Date),
        p("VMStartEndDate", Date),
        p("ClientSessionValidateDate", Date),
        p("ServerSessionValidateDate", Date),
        p("EstablishmentDate", Date),
        p("HdxStartDate", Date),
        p("HdxEndDate", Date),
        p("AuthenticationDuration", Int64),
        p("GpoStartDate", Date),
        p("GpoEndDate", Date),
        p("LogOnScriptsStartDate", Date),
        p("LogOnScriptsEndDate", Date),
        p("ProfileLoadStartDate", Date),
        p("ProfileLoadEndDate", Date),
        p("InteractiveStartDate", Date),
        p("InteractiveEndDate", Date),
        p("SessionKey", Guid),
        p("CreatedDate", Date),
        p("ModifiedDate", Date),
    ],
    navs: &[one("Session", "Sessions", "SessionKey")],
};

pub static CONNECTION_FAILURE_LOGS: EntityDef = EntityDef {
    set: "ConnectionFailureLogs",
    type_name: "Citrix.Monitor.Repository.V2.ConnectionFailureLog",
    key: "Id",
    props: &[
        p("Id", Int64),
        p("SessionKey", Guid),
        p("FailureDate", Date),
        p("UserId", Int32),
        p("MachineId", Guid),
        p("ConnectionFailureEnumValue", Int32),
        p("CreatedDate", Date),
        p("ModifiedDate", Date),
    ],
    navs: &[
        one("Session", "Sessions", "SessionKey"),
        one("Machine", "Machines", "MachineId"),
        one("User", "Users", "UserId"),
    ],
};

pub static CONNECTION_FAILURE_CATEGORIES: EntityDef = EntityDef {
    set: "ConnectionFailureCategories",
    type_name: "Citrix.Monitor.Repository.V2.ConnectionFailureCategory",
    key: "Id",
    props: &[
        p("Id", Int32),
        p("ConnectionFailureEnumValue", Int32),
        p("Category", Int32),
    ],
    navs: &[],
};

pub static LOAD_INDEXES: EntityDef = EntityDef {
    set: "LoadIndexes",
    type_name: "Citrix.Monitor.Repository.V2.LoadIndex",
    key: "Id",
    props: &[
        p("Id", Int64),
        p("EffectiveLoadIndex", Int32),
        p("Cpu", Int32),
        p("Memory", Int32),
        p("Disk", Int32),
        p("Network", Int32),
        p("SessionCount", Int32),
        p("MachineId", Guid),
        p("CreatedDate", Date),
        p("ModifiedDate", Date),
    ],
    navs: &[one("Machine", "Machines", "MachineId")],
};

pub static MACHINE_FAILURE_LOGS: EntityDef = EntityDef {
    set: "MachineFailureLogs",
    type_name: "Citrix.Monitor.Repository.V2.MachineFailureLog",
    key: "Id",
    props: &[
        p("Id", Int64),
        p("MachineId", Guid),
        p("FailureStartDate", Date),
        p("FailureEndDate", Date),
        p("FaultState", Int32),
        p("LastDeregisteredCode", Int32),
        p("CreatedDate", Date),
        p("ModifiedDate", Date),
    ],
    navs: &[one("Machine", "Machines", "MachineId")],
};

pub static SESSION_ACTIVITY_SUMMARIES: EntityDef = EntityDef {
    set: "SessionActivitySummaries",
    type_name: "Citrix.Monitor.Repository.V2.SessionActivitySummary",
    key: "Id",
    props: &[
        p("Id", Int64),
        p("SummaryDate", Date),
        p("DesktopGroupId", Guid),
        p("ConnectedSessionCount", Int32),
        p("DisconnectedSessionCount", Int32),
        p("ConcurrentSessionCount", Int32),
        p("TotalLogOnDuration", Int64),
        p("TotalLogOnCount", Int32),
        p("Granularity", Int32),
        p("CreatedDate", Date),
        p("ModifiedDate", Date),
    ],
    navs: &[one("DesktopGroup", "DesktopGroups", "DesktopGroupId")],
};

pub static LOG_ON_SUMMARIES: EntityDef = EntityDef {
    set: "LogOnSummaries",
    type_name: "Citrix.Monitor.Repository.V2.LogOnSummary",
    key: "Id",
    props: &[
        p("Id", Int64),
        p("SummaryDate", Date),
        p("DesktopGroupId", Guid),
        p("TotalDuration", Int64),
        p("TotalCount", Int32),
        p("BrokeringDuration", Int64),
        p("BrokeringCount", Int32),
        p("VMStartDuration", Int64),
        p("VMStartCount", Int32),
        p("HdxDuration", Int64),
        p("HdxCount", Int32),
        p("AuthenticationDuration", Int64),
        p("AuthenticationCount", Int32),
        p("GpoDuration", Int64),
        p("GpoCount", Int32),
        p("LogOnScriptsDuration", Int64),
        p("LogOnScriptsCount", Int32),
        p("InteractiveDuration", Int64),
        p("InteractiveCount", Int32),
        p("ProfileLoadDuration", Int64),
        p("ProfileLoadCount", Int32),
        p("VMPowerOnDuration", Int64),
        p("VMRegistrationDuration", Int64),
        p("Granularity", Int32),
        p("CreatedDate", Date),
        p("ModifiedDate", Date),
    ],
    navs: &[one("DesktopGroup", "DesktopGroups", "DesktopGroupId")],
};

pub static LOAD_INDEX_SUMMARIES: EntityDef = EntityDef {
    set: "LoadIndexSummaries",
    type_name: "Citrix.Monitor.Repository.V2.LoadIndexSummary",
    key: "Id",
    props: &[
        p("Id", Int64),
        p("SummaryDate", Date),
        p("MachineId", Guid),
        p("SumCount", Int32),
        p("SumLoadIndex", Int64),
        p("SumCpu", Int64),
        p("SumNetwork", Int64),
        p("SumDisk", Int64),
        p("SumMemory", Int64),
        p("SumSessionCount", Int64),
        p("Granularity", Int32),
        p("CreatedDate", Date),
        p("ModifiedDate", Date),
    ],
    navs: &[one("Machine", "Machines", "MachineId")],
};

pub static FAILURE_LOG_SUMMARIES: EntityDef = EntityDef {
    set: "FailureLogSummaries",
    type_name: "Citrix.Monitor.Repository.V2.FailureLogSummary",
    key: "Id",
    props: &[
        p("Id", Int64),
        p("SummaryDate", Date),
        p("DesktopGroupId", Guid),
        p("FailureCategory", Int32),
        p("FailureCode", Int32),
        p("FailureCount", Int32),
        p("Granularity", Int32),
        p("CreatedDate", Date),
        p("ModifiedDate", Date),
    ],
    navs: &[one("DesktopGroup", "DesktopGroups", "DesktopGroupId")],
};

pub static MACHINE_SUMMARIES: EntityDef = EntityDef {
    set: "MachineSummaries",
    type_name: "Citrix.Monitor.Repository.V2.MachineSummary",
    key: "Id",
    props: &[
        p("Id", Int64),
        p("SummaryDate", Date),
        p("DesktopGroupId", Guid),
        p("PoweredOnMachinesCount", Int32),
        p("RegisteredMachinesCount", Int32),
        p("MachinesInMaintenanceModeCount", Int32),
        p("MachinesCount", Int32),
        p("Granularity", Int32),
        p("CreatedDate", Date),
        p("ModifiedDate", Date),
    ],
    navs: &[one("DesktopGroup", "DesktopGroups", "DesktopGroupId")],
};

pub static RESOURCE_UTILIZATION: EntityDef = EntityDef {
    set: "ResourceUtilization",
    type_name: "Citrix.Monitor.Repository.V2.ResourceUtilization",
    key: "Id",
    props: &[
        p("Id", Int64),
        p("MachineId", Guid),
        p("CollectedDate", Date),
        p("PercentCpu", Double),
        p("UsedMemory", Int64),
        p("TotalMemory", Int64),
        p("DesktopGroupId", Guid),
        p("CreatedDate", Date),
        p("ModifiedDate", Date),
    ],
    navs: &[
        one("Machine", "Machines", "MachineId"),
        one("DesktopGroup", "DesktopGroups", "DesktopGroupId"),
    ],
};

pub static RESOURCE_UTILIZATION_SUMMARY: EntityDef = EntityDef {
    set: "ResourceUtilizationSummary",
    type_name: "Citrix.Monitor.Repository.V2.ResourceUtilizationSummary",
    key: "Id",
    props: &[
        p("Id", Int64),
        p("SummaryDate", Date),
        p("MachineId", Guid),
        p("DesktopGroupId", Guid),
        p("AvgPercentCpu", Double),
        p("PeakPercentCpu", Double),
        p("AvgUsedMemory", Double),
        p("PeakUsedMemory", Int64),
        p("AvgTotalMemory", Double),
        p("TotalSessionCount", Int32),
        p("Granularity", Int32),
        p("CreatedDate", Date),
        p("ModifiedDate", Date),
    ],
    navs: &[
        one("Machine", "Machines", "MachineId"),
        one("DesktopGroup", "DesktopGroups", "DesktopGroupId"),
    ],
};

pub static MACHINE_METRIC: EntityDef = EntityDef {
    set: "MachineMetric",
    type_name: "Citrix.Monitor.Repository.V2.MachineMetric",
    key: "Id",
    // No CreatedDate/ModifiedDate: the real set has none (filter on CollectedDate).
    props: &[
        p("Id", Int64),
        p("MachineId", Guid),
        p("CollectedDate", Date),
        p("Iops", Double),
        p("Latency", Double),
    ],
    navs: &[one("Machine", "Machines", "MachineId")],
};

pub static SESSION_METRICS: EntityDef = EntityDef {
    set: "SessionMetrics",
    type_name: "Citrix.Monitor.Repository.V2.SessionMetrics",
    key: "Id",
    props: &[
        p("Id", Int64),
        p("SessionId", Guid),
        p("CollectedDate", Date),
        p("IcaRttMS", Int32),
        p("IcaLatency", Int32),
        p("ClientL7Latency", Double),
        p("ServerL7Latency", Double),
        p("CreatedDate", Date),
        p("ModifiedDate", Date),
    ],
    navs: &[one("Session", "Sessions", "SessionId")],
};

pub static HOTFIXES: EntityDef = EntityDef {
    set: "Hotfixes",
    type_name: "Citrix.Monitor.Repository.V2.Hotfix",
    key: "Id",
    props: &[
        p("Id", Int32),
        p("Name", Str),
        p("Article", Str),
        p("ArticleName", Str),
        p("FileName", Str),
        p("FileFormat", Str),
        p("Version", Str),
        p("ComponentName", Str),
        p("ComponentVersion", Str),
    ],
    navs: &[],
};

pub static MACHINE_HOTFIX_LOGS: EntityDef = EntityDef {
    set: "MachineHotfixLogs",
    type_name: "Citrix.Monitor.Repository.V2.MachineHotfixLog",
    key: "Id",
    props: &[
        p("Id", Int64),
        p("MachineId", Guid),
        p("HotfixId", Int32),
        p("ChangeType", Int32),
        p("CurrentState", Bool),
        p("CreatedDate", Date),
        p("ModifiedDate", Date),
    ],
    navs: &[
        one("Machine", "Machines", "MachineId"),
        one("Hotfix", "Hotfixes", "HotfixId"),
    ],
};

pub static APPLICATIONS: EntityDef = EntityDef {
    set: "Applications",
    type_name: "Citrix.Monitor.Repository.V2.Application",
    key: "Id",
    props: &[
        p("Id", Guid),
        p("Name", Str),
        p("PublishedName", Str),
        p("BrowserName", Str),
        p("AdminFolder", Str),
        p("ApplicationType", Int32),
        p("Enabled", Bool),
        p("LifecycleState", Int32),
        p("Path", Str),
        p("CreatedDate", Date),
        p("ModifiedDate", Date),
    ],
    navs: &[many(
        "ApplicationInstances",
        "ApplicationInstances",
        "ApplicationId",
    )],
};

pub static APPLICATION_INSTANCES: EntityDef = EntityDef {
    set: "ApplicationInstances",
    type_name: "Citrix.Monitor.Repository.V2.ApplicationInstance",
    key: "Id",
    props: &[
        p("Id", Int64),
        p("ApplicationId", Guid),
        p("SessionKey", Guid),
        p("StartDate", Date),
        p("EndDate", Date),
        p("CreatedDate", Date),
        p("ModifiedDate", Date),
    ],
    navs: &[
        one("Application", "Applications", "ApplicationId"),
        one("Session", "Sessions", "SessionKey"),
    ],
};

/// Every simulated entity set, in the order of the service document.
pub static ENTITY_SETS: &[&EntityDef] = &[
    &APPLICATION_INSTANCES,
    &APPLICATIONS,
    &CATALOGS,
    &CONNECTION_FAILURE_CATEGORIES,
    &CONNECTION_FAILURE_LOGS,
    &CONNECTIONS,
    &DESKTOP_GROUPS,
    &FAILURE_LOG_SUMMARIES,
    &HOTFIXES,
    &HYPERVISORS,
    &LOAD_INDEX_SUMMARIES,
    &LOAD_INDEXES,
    &LOG_ON_SUMMARIES,
    &MACHINE_FAILURE_LOGS,
    &MACHINE_HOTFIX_LOGS,
    &MACHINE_METRIC,
    &MACHINE_SUMMARIES,
    &MACHINES,
    &RESOURCE_UTILIZATION,
    &RESOURCE_UTILIZATION_SUMMARY,
    &SESSION_ACTIVITY_SUMMARIES,
    &SESSION_METRICS,
    &SESSIONS,
    &USERS,
];

/// Looks an entity set up by its exact (case-sensitive) name, as the real service does.
pub fn entity_set(name: &str) -> Option<&'static EntityDef> {
    ENTITY_SETS.iter().copied().find(|d| d.set == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_navigation_points_at_a_known_set_and_property() {
        for def in ENTITY_SETS {
            assert!(def.prop(def.key).is_some(), "{} key", def.set);
            for nav in def.navs {
                let target =
                    entity_set(nav.target).unwrap_or_else(|| panic!("{}.{}", def.set, nav.name));
                match nav.kind {
                    NavKind::One { fk } => {
                        let fk_ty = def.props[def.prop(fk).expect("fk")].ty;
                        let key_ty = target.props[target.key_index()].ty;
                        assert_eq!(fk_ty, key_ty, "{}.{}", def.set, nav.name);
                    }
                    NavKind::Many { target_fk } => {
                        let fk_ty = target.props[target.prop(target_fk).expect("target fk")].ty;
                        assert_eq!(
                            fk_ty,
                            def.props[def.key_index()].ty,
                            "{}.{}",
                            def.set,
                            nav.name
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn set_names_are_case_sensitive() {
        assert!(entity_set("Machines").is_some());
        assert!(entity_set("machines").is_none());
    }
}
